"""JSON log lines with request, event and posting ids; Sentry events scrubbed of cards."""

import io
import json
import logging
import runpy
from pathlib import Path
from unittest import mock

import pytest
from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.db import OperationalError, connection

from portal.logging import (
    ContextFilter,
    JsonFormatter,
    log_context,
    request_id,
    scrub_sentry_event,
)

CARD = "4111 1111 1111 1111"
SETTINGS_FILE = Path(django_settings.BASE_DIR) / "portal" / "settings_observability.py"


@pytest.fixture
def json_lines():
    """A JSON handler, as LOG_FORMAT=json sets up, on the portal's and the pipeline's
    loggers; yields a function returning the lines written so far, parsed."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ContextFilter())
    loggers = [logging.getLogger(name) for name in ("portal", "integrations", "test")]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    for logger in loggers:
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)


def test_a_line_is_one_json_object_with_time_level_logger_and_message(json_lines):
    logging.getLogger("test.pipeline").warning("posting %s failed", 12)

    [line] = json_lines()

    assert line["message"] == "posting 12 failed"
    assert line["level"] == "WARNING"
    assert line["name"] == "test.pipeline"
    assert line["time"]
    assert "request_id" not in line


def test_it_masks_card_numbers_in_messages_and_tracebacks(json_lines):
    try:
        raise ValueError(f"bad card {CARD}")
    except ValueError:
        logging.getLogger("test").exception("payment with %s refused", CARD)

    [line] = json_lines()

    text = json.dumps(line)
    assert "4111" not in text
    assert "1111" in line["message"]
    assert "Traceback" in line["exc_info"]


def test_the_formatter_masks_even_records_made_without_the_factory():
    record = logging.makeLogRecord(
        {"name": "x", "levelname": "INFO", "msg": f"card {CARD}", "args": None}
    )

    line = JsonFormatter().format(record)

    assert CARD not in line
    assert json.loads(line)["message"].endswith("1111")


def test_event_and_posting_ids_come_from_extra_or_the_context(json_lines):
    log = logging.getLogger("test")
    log.warning("one", extra={"event_id": 7})
    with log_context(event=8, posting=9):
        log.warning("two")
    log.warning("three")

    one, two, three = json_lines()

    assert one["event_id"] == 7
    assert (two["event_id"], two["posting_id"]) == (8, 9)
    assert "event_id" not in three and "posting_id" not in three


def test_a_pipeline_failure_names_its_event(json_lines, db):
    from integrations import processing
    from integrations.connectors.base import ConnectorError

    event = mock.Mock(pk=41, attempts=2)
    event.fail.return_value = "failed"

    processing.event_failed(
        event, ConnectorError("Sage Pro could not be reached", transient=True)
    )

    [line] = json_lines()
    assert line["event_id"] == 41


@pytest.mark.django_db
def test_each_request_gets_an_id_echoed_in_the_response(client):
    response = client.get("/healthz")

    assert len(response["X-Request-ID"]) == 32


@pytest.mark.django_db
def test_a_callers_request_id_is_kept_and_a_forged_one_replaced(client):
    kept = client.get("/healthz", headers={"X-Request-ID": "lb-4f2a.9"})
    forged = client.get("/healthz", headers={"X-Request-ID": 'x"\n{"level":"x'})

    assert kept["X-Request-ID"] == "lb-4f2a.9"
    assert forged["X-Request-ID"] != 'x"\n{"level":"x'
    assert len(forged["X-Request-ID"]) == 32


@pytest.mark.django_db
def test_lines_logged_during_a_request_carry_its_id(client, json_lines):
    with mock.patch.object(
        connection, "cursor", side_effect=OperationalError("unable to open database")
    ):
        response = client.get("/healthz", headers={"X-Request-ID": "req-123"})

    assert response.status_code == 503
    lines = [line for line in json_lines() if line["name"] == "portal.views"]
    assert lines and all(line["request_id"] == "req-123" for line in lines)
    assert request_id.get() == ""  # nothing leaks into the next request


# --- settings ------------------------------------------------------------------------


def load_settings(monkeypatch, **environ):
    for name in ("LOG_FORMAT", "SENTRY_DSN", "METRICS_ALLOWED_NETWORKS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(SETTINGS_FILE))


def test_log_format_must_be_plain_or_json(monkeypatch):
    assert load_settings(monkeypatch)["LOG_FORMAT"] == "plain"
    assert load_settings(monkeypatch, LOG_FORMAT="json")["LOG_FORMAT"] == "json"
    with pytest.raises(ImproperlyConfigured, match="plain .* or json"):
        load_settings(monkeypatch, LOG_FORMAT="xml")


def test_a_bad_metrics_network_fails_at_startup(monkeypatch):
    with pytest.raises(ImproperlyConfigured, match="CIDR"):
        load_settings(monkeypatch, METRICS_ALLOWED_NETWORKS="10.0.0.0/8,intranet")


# --- Sentry --------------------------------------------------------------------------


def test_sentry_starts_only_with_a_dsn_and_sends_no_personal_data(monkeypatch):
    with mock.patch("sentry_sdk.init") as init:
        load_settings(monkeypatch)
        assert not init.called
        load_settings(monkeypatch, SENTRY_DSN="https://public@sentry.example.invalid/4")

    options = init.call_args.kwargs
    assert options["send_default_pii"] is False
    assert options["before_send"] is scrub_sentry_event
    assert options["dsn"] == "https://public@sentry.example.invalid/4"


def test_a_bad_sentry_dsn_fails_at_startup_without_showing_it(monkeypatch):
    with pytest.raises(ImproperlyConfigured, match="SENTRY_DSN") as raised:
        load_settings(monkeypatch, SENTRY_DSN="secretkey-not-a-dsn")

    assert "secretkey" not in str(raised.value)


def test_sentry_events_lose_card_numbers_everywhere():
    event = {
        "message": f"charge {CARD} failed",
        "exception": {"values": [{"type": "ValueError", "value": f"declined: {CARD}"}]},
        "breadcrumbs": {"values": [{"message": f"POST card={CARD.replace(' ', '')}"}]},
        "request": {"data": {"card_number": "5500005555555559", "amount": "10.00"}},
        "extra": {"numbers": [4111, 1111, 1111, 1111]},
    }

    scrubbed = scrub_sentry_event(event, {})

    text = json.dumps(scrubbed)
    assert CARD not in text
    assert "4111111111111111" not in text
    assert "5500005555555559" not in text
    assert scrubbed["request"]["data"]["amount"] == "10.00"
    assert scrubbed["exception"]["values"][0]["type"] == "ValueError"
    assert isinstance(scrubbed, dict)
