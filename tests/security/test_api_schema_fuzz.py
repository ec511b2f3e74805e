"""schemathesis over the OpenAPI schema, in-process: no documented operation answers 5xx.

Conformance to the documented answers is reported (and asserted for the read API); the
webhook endpoints do not yet document every 4xx answer, so their deviations are
printed rather than failed.
"""

import warnings

import pytest

from tests.support.apifuzz import run_api_fuzz
from tests.support.profiles import fuzz_settings

pytestmark = [pytest.mark.fuzz, pytest.mark.django_db]


def test_no_documented_operation_answers_a_server_error(
    paytrace_conn, superuser, settings
):
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "localhost"]
    result = run_api_fuzz(superuser, examples_per_operation=12, base=fuzz_settings())

    for key, count in sorted(result.nonconformant.items()):
        warnings.warn(f"not conformant x{count}: {key}", stacklevel=1)
    assert result.cases > 0
    assert not result.server_errors, "\n\n".join(result.server_errors[:10])
