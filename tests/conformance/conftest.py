"""The `target` fixture: every conformance test runs once per implementation.

- `sandbox`: the emulator over the in-process bridge, seeded per test;
- `agent`: the agent's direct HTTP binding on 127.0.0.1, over a copy of a fixture
  FoxPro company created once per session;
- `relay`: the same agent through the portal's relay transport.

While the agent or the relay cannot be imported yet, their params are skipped with the
import error as the reason (and only then).
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from pathlib import Path

import pytest
import responses

from tests import bridge
from tests.conformance import targets

TARGETS = ("sandbox", "agent", "relay")


def business_today() -> datetime.date:
    from integrations.sandbox.sagepro import seed

    return seed.today()


@pytest.fixture
def bridged() -> Iterator[responses.RequestsMock]:
    """The bridge to the in-process portal and sandbox (as the `http` fixture), with
    the agent's real 127.0.0.1 server let through."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        bridge.register(mock)
        mock.add_passthru("http://127.0.0.1")
        yield mock


@pytest.fixture(scope="session")
def agent_template(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, datetime.date]:
    """The fixture FoxPro company, created once; each test copies it."""
    try:
        from sagepro_agent.store.fixture import seed  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"agent target: the fixture store is not importable ({exc})")
    today = business_today()
    folder = tmp_path_factory.mktemp("conformance-template") / "data"
    return targets.create_template(folder, today), today


def make_agent(request: pytest.FixtureRequest, tmp_path: Path) -> targets.AgentTarget:
    template, today = request.getfixturevalue("agent_template")
    try:
        import sagepro_agent.agent  # noqa: F401
        import sagepro_agent.config  # noqa: F401
        import sagepro_agent.http.wsgi  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"agent target: the agent is not importable ({exc})")
    return targets.AgentTarget(template, tmp_path / "agent", today)


def make_relay(request: pytest.FixtureRequest, tmp_path: Path) -> targets.Target:
    try:
        from tests.conformance.relay import RelayTarget
    except ImportError as exc:
        pytest.skip(f"relay target: the relay is not importable ({exc})")
    template, today = request.getfixturevalue("agent_template")
    return RelayTarget(template, tmp_path / "agent", today)


@pytest.fixture(params=TARGETS)
def target(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    db: None,
    bridged: responses.RequestsMock,
) -> Iterator[targets.Target]:
    """One implementation of the contract, seeded with the sandbox's baseline.

    Every param takes the test database and the bridge statically: pytest-django does
    not set the test database up for a `db` asked for with `getfixturevalue` here (the
    calls would reach the development database)."""
    if request.param == "sandbox":
        made: targets.Target = targets.SandboxTarget()
    elif request.param == "agent":
        made = make_agent(request, tmp_path)
    else:
        made = make_relay(request, tmp_path)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def sandbox_target(db, bridged) -> targets.SandboxTarget:  # noqa: ANN001
    return targets.SandboxTarget()


@pytest.fixture
def agent_target(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[targets.AgentTarget]:
    made = make_agent(request, tmp_path)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def relay_target(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    db: None,
    bridged: responses.RequestsMock,
) -> Iterator[targets.Target]:
    made = make_relay(request, tmp_path)
    try:
        yield made
    finally:
        made.close()
