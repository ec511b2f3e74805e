"""The pieces of `make prod-check` that run without starting the layout."""

import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from deploy import harness, prod_check
from deploy.harness import CheckFailed
from deploy.prod_check import Figures, find_problems

ROOT = Path(__file__).resolve().parents[2]
URL = "postgres://postgres@127.0.0.1:5432/portal_prodcheck"


def production(base=None):
    return harness.production_environment(URL, "http://127.0.0.1:8123", base)


def passing(n: int = 3) -> Figures:
    return Figures(
        expected=n,
        statuses={202: n},
        event_states={"processed": n},
        posting_states={"posted": n},
        most_postings_per_transaction=1,
        receipts=n,
        seconds_to_post=1.5,
        latencies=[0.5] * n,
    )


def test_the_environment_is_production_whatever_the_developer_had():
    env = production(
        {"DEBUG": "1", "DEMO_MODE": "1", "REDIS_URL": "redis://x", "HOME": "/h"}
    )

    assert env["DJANGO_SETTINGS_MODULE"] == "portal.settings"
    assert env["DEBUG"] == "0"
    assert env["DEMO_MODE"] == "0"
    assert env["REDIS_URL"] == ""  # the ORM broker
    assert env["HOME"] == "/h"
    assert env["DATABASE_URL"] == URL
    assert env["SANDBOX_ENABLED"] == "1"
    Fernet(env["FIELD_ENCRYPTION_KEYS"])  # a usable key
    assert len(env["SECRET_KEY"]) >= 50


def test_every_run_gets_its_own_keys():
    first, second = production(), production()

    assert first["SECRET_KEY"] != second["SECRET_KEY"]
    assert first["FIELD_ENCRYPTION_KEYS"] != second["FIELD_ENCRYPTION_KEYS"]


def test_only_the_sandboxes_server_answers_plain_http():
    env = production()

    assert env["SECURE_SSL_REDIRECT"] == "1"
    assert harness.sandbox_environment(env)["SECURE_SSL_REDIRECT"] == "0"


def test_check_deploy_is_clean_with_the_environment_the_script_uses():
    env = production({"PATH": "/usr/bin:/bin"})
    done = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert "no issues" in done.stdout


@pytest.mark.parametrize("name", ["portal_prodcheck", "portal_prodcheck_ci"])
def test_it_uses_a_database_named_for_it(name):
    assert prod_check.check_database_name(name) == name


@pytest.mark.parametrize("name", ["portal", "postgres", 'x"; drop', "PORTAL_PRODCHECK"])
def test_it_refuses_to_drop_any_other_database(name):
    with pytest.raises(CheckFailed, match="portal_prodcheck"):
        prod_check.check_database_name(name)


def test_a_clean_run_has_no_problems():
    assert find_problems(passing()) == []


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"statuses": {202: 2, 401: 1}}, "2 of 3 webhooks accepted"),
        ({"send_errors": 1}, "1 connection errors"),
        ({"event_states": {"processed": 2, "failed": 1}}, "event states"),
        ({"posting_states": {"posted": 2, "needs_review": 1}}, "posting states"),
        ({"most_postings_per_transaction": 2}, "2 receipt postings"),
        ({"receipts": 4}, "4 receipts in Sage Pro, expected 3"),
        ({"duplicate_receipt_references": 1}, "more than one Sage Pro receipt"),
    ],
)
def test_each_way_of_missing_exactly_once_is_named(change, named):
    figures = passing()
    for name, value in change.items():
        setattr(figures, name, value)

    problems = find_problems(figures)

    assert len(problems) == 1
    assert named in problems[0]


def test_the_summary_shows_the_figures():
    text = "\n".join(prod_check.summary_lines(passing()))

    assert "3 sent" in text
    assert "{'posted': 3}" in text
    assert "Sage Pro receipts: 3" in text
    assert "p95 0.50 s" in text
    assert "(2.0/s)" in text


@pytest.mark.parametrize(
    ("argv", "message"),
    [(["--events", "0"], "--events"), (["--timeout", "0"], "--timeout")],
)
def test_bad_arguments_are_refused_with_the_fix(argv, message, capsys):
    with pytest.raises(SystemExit):
        prod_check.parse_args(argv)
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("allowed", "host"),
    [
        ("portal.example.com,other.example.com", "portal.example.com"),
        (".example.com", "example.com"),
        ("*", "localhost"),
        ("", "localhost"),
    ],
)
def test_the_container_health_check_names_an_allowed_host(allowed, host):
    from deploy.healthcheck import host_header

    assert host_header(allowed) == host
