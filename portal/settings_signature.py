"""The second signature on reviewers' overrides (issue 16): docs/second-signature.md.

Read from the same environment as `portal/settings.py`. On (the default), a reviewer's
correction of a receipt waits until a finance manager other than the requester signs
it; off, it is sent at once, as before.
"""

import environ

__all__ = ["OVERRIDE_SECOND_SIGNATURE"]

env = environ.Env()

OVERRIDE_SECOND_SIGNATURE = env.bool("OVERRIDE_SECOND_SIGNATURE", default=True)
