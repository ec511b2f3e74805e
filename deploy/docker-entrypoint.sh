#!/bin/sh
# The image's roles: web (default), worker, migrate; anything else runs as given, e.g.
#   docker compose run --rm web python manage.py purge_deliveries --dry-run
set -eu
cd /app
case "${1:-web}" in
web)
    shift || true
    # WEB_CONCURRENCY (workers) and FORWARDED_ALLOW_IPS come from the environment.
    exec gunicorn portal.wsgi:application \
        --config python:portal.gunicorn_conf \
        --bind "0.0.0.0:${PORT:-8000}" \
        --worker-class gthread --threads "${GUNICORN_THREADS:-4}" \
        --timeout "${GUNICORN_TIMEOUT:-30}" --graceful-timeout 20 \
        --access-logfile - --error-logfile - "$@"
    ;;
worker)
    shift || true
    exec python manage.py qcluster "$@"
    ;;
migrate)
    shift || true
    # Runs once before web and workers start: a fresh start for the metrics' files.
    if [ -n "${PROMETHEUS_MULTIPROC_DIR:-}" ] && [ -d "$PROMETHEUS_MULTIPROC_DIR" ]; then
        find "$PROMETHEUS_MULTIPROC_DIR" -maxdepth 1 -name '*.db' -delete
    fi
    exec python manage.py migrate --noinput "$@"
    ;;
*)
    exec "$@"
    ;;
esac
