"""Headers that carry the sandboxes' own credentials, for harnesses that drive their
helpers (`_faults`, `_settle`): tests, benchmarks and the demo."""

import base64

from django.conf import settings


def sagepro_headers() -> dict[str, str]:
    """The Sage Pro sandbox's API key, as every call to it sends it."""
    return {"Authorization": f"Bearer {settings.SANDBOX_SAGEPRO_API_KEY}"}


def paytrace_headers() -> dict[str, str]:
    """The PayTrace sandbox's API user, as HTTP basic credentials."""
    pair = f"{settings.SANDBOX_PAYTRACE_USERNAME}:{settings.SANDBOX_PAYTRACE_PASSWORD}"
    return {"Authorization": f"Basic {base64.b64encode(pair.encode()).decode()}"}
