import datetime
from zoneinfo import ZoneInfo

import pytest

BUSINESS_TIME_ZONE = "America/Los_Angeles"  # the portal's BUSINESS_TIME_ZONE default


def business_today() -> datetime.date:
    return datetime.datetime.now(ZoneInfo(BUSINESS_TIME_ZONE)).date()


@pytest.fixture
def fixture_company(tmp_path):
    """(folder, store): a FoxPro fixture company 01 seeded like the sandbox for today's
    business date, opened with the agent user AGNT and a short lock wait."""
    from sagepro_agent.store.fixture import FixtureStore
    from sagepro_agent.store.fixture.seed import create_company

    folder = tmp_path / "sage"
    create_company(folder, "01", today=business_today())
    store = FixtureStore(folder, reprocess=0.5, user="AGNT")
    yield folder, store
    store.close()
