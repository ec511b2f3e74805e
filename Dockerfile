# syntax=docker/dockerfile:1
# The portal's image: one image, three roles (see deploy/docker-entrypoint.sh):
#   web      gunicorn portal.wsgi on :8000 (the default)
#   worker   manage.py qcluster (run as many as you need)
#   migrate  manage.py migrate, once per upgrade, before web and workers start
# docs/deploy.md explains the environment it expects. Built and read by hand: the
# project's CI has no container runtime, `make prod-check` runs the same layout without
# containers.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: every dependency as a wheel (compilers stay in this stage) -----------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml ./
# The runtime dependencies as pyproject.toml lists them, plus the Redis client for the
# optional Redis broker (REDIS_URL).
RUN python -c "import tomllib; deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; print('\n'.join([*deps, 'redis>=5']))" > requirements.txt \
    && pip wheel --wheel-dir /wheels -r requirements.txt

# --- runtime: slim Python, the wheels, the source, a non-root user ---------------------
FROM ${PYTHON_IMAGE} AS runtime
# gunicorn reads WEB_CONCURRENCY (worker processes) and FORWARDED_ALLOW_IPS (the proxies
# whose X-Forwarded-* headers it trusts: only the reverse proxy reaches the container).
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    DJANGO_SETTINGS_MODULE=portal.settings \
    WEB_CONCURRENCY=2 \
    FORWARDED_ALLOW_IPS=*
RUN groupadd --system --gid 10001 portal \
    && useradd --system --uid 10001 --gid portal --create-home --home-dir /home/portal portal
COPY --from=build /src/requirements.txt /tmp/requirements.txt
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m venv /opt/venv \
    && pip install --no-index --find-links=/wheels -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt
WORKDIR /app
COPY --chown=root:root manage.py pyproject.toml ./
COPY --chown=root:root portal ./portal
COPY --chown=root:root integrations ./integrations
COPY --chown=root:root mappings ./mappings
COPY --chown=root:root sagepro_agent ./sagepro_agent
COPY --chown=root:root templates ./templates
COPY --chown=root:root static ./static
COPY --chown=root:root deploy ./deploy
# Static files at build time (WhiteNoise serves them). The settings refuse to load
# without a secret key and encryption keys: throwaway values for this one command, not
# kept in the image.
RUN SECRET_KEY=collectstatic-only FIELD_ENCRYPTION_KEYS=collectstatic-only \
    DATABASE_URL=postgres://unused@localhost/unused \
    python manage.py collectstatic --noinput --verbosity 0 \
    && python -m compileall -q portal integrations mappings sagepro_agent \
    && chmod 0755 deploy/docker-entrypoint.sh \
    && install -d -o portal -g portal -m 0750 /run/portal-metrics
# The code is root-owned and read-only for the service user; /run/portal-metrics (the
# metrics' multiprocess files, a volume in compose.yaml) is the user's.
USER portal
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "/app/deploy/healthcheck.py"]
ENTRYPOINT ["/app/deploy/docker-entrypoint.sh"]
CMD ["web"]
