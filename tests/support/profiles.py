"""Hypothesis settings for the attack tests.

`fuzz-ci` (default) is modest and repeatable, for `make test`; `FUZZ_PROFILE=fuzz-deep`
runs longer and random. `FUZZ_EXAMPLES=N` overrides the count in either.
"""

import os

from hypothesis import HealthCheck, settings

_QUIET = [
    HealthCheck.function_scoped_fixture,
    HealthCheck.too_slow,
    HealthCheck.data_too_large,
    HealthCheck.large_base_example,
    HealthCheck.filter_too_much,
]

settings.register_profile(
    "fuzz-ci",
    max_examples=20,
    derandomize=True,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=_QUIET,
)
settings.register_profile(
    "fuzz-deep",
    parent=settings.get_profile("fuzz-ci"),
    max_examples=1000,
    derandomize=False,
)


def fuzz_settings(max_examples: int | None = None) -> settings:
    profile = settings.get_profile(os.environ.get("FUZZ_PROFILE", "fuzz-ci"))
    count = (
        int(os.environ.get("FUZZ_EXAMPLES", 0)) or max_examples or profile.max_examples
    )
    return settings(parent=profile, max_examples=count)
