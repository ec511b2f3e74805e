"""Container health check: GET /healthz on this container, as an allowed host.

Exit 0 when the portal answers 200. The request names the first ALLOWED_HOSTS entry
as its Host (Django refuses any other), over plain HTTP (SECURE_REDIRECT_EXEMPT lets
/healthz through without the HTTPS redirect).
"""

import os
import sys
import urllib.error
import urllib.request


def host_header(allowed_hosts: str) -> str:
    first = allowed_hosts.split(",")[0].strip().lstrip(".")
    return "localhost" if first in ("", "*") else first


def main() -> int:
    port = os.environ.get("PORT", "8000")
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/healthz",
        headers={"Host": host_header(os.environ.get("ALLOWED_HOSTS", ""))},
    )
    try:
        with urllib.request.urlopen(request, timeout=4) as reply:
            return 0 if reply.status == 200 else 1
    except (urllib.error.URLError, OSError) as exc:
        sys.stderr.write(f"healthz: {exc}\n")
        return 1


if __name__ == "__main__":
    sys.exit(main())
