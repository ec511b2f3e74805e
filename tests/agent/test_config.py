"""The site mapping: a valid file loads; every mistake is listed with its key and fix."""

import textwrap

import pytest

from sagepro_agent.config import ConfigError, api_key_matches, hash_api_key, load, parse

VALID = """
[sage]
store = "vfpoledb"
data = "sage"
companies = ["01", "02"]
receipt_mode = "direct"
[agent]
user = "AGNT"
journal = "agent/journal.sqlite3"
time_zone = "America/Chicago"
scan_interval = 30
watchdog_interval = 5
[http]
bind = "0.0.0.0:9000"
api_key_env = "MY_AGENT_KEY"
[tables.receipts]
physical = "ARCSH{co}"
[tables.receipts.fields]
refno = "checkno"
[relay]
portal = "https://portal.example"
"""


def write(tmp_path, text):
    (tmp_path / "sage").mkdir(exist_ok=True)
    path = tmp_path / "site.toml"
    path.write_text(textwrap.dedent(text))
    return path


def problems(tmp_path, text):
    with pytest.raises(ConfigError) as info:
        load(write(tmp_path, text))
    return info.value.problems


def test_a_valid_mapping_loads_with_paths_relative_to_the_file(tmp_path, monkeypatch):
    mapping = load(write(tmp_path, VALID))
    assert mapping.store_kind == "vfpoledb"
    assert mapping.data_path == str(tmp_path / "sage")
    assert mapping.journal_path == str(tmp_path / "agent" / "journal.sqlite3")
    assert mapping.marker_path == str(tmp_path / "journal-install-id")
    assert mapping.companies == ["01", "02"]
    assert str(mapping.time_zone) == "America/Chicago"
    assert (mapping.http_host, mapping.http_port) == ("0.0.0.0", 9000)
    assert mapping.physical_names()["receipts"] == "ARCSH{co}"
    assert mapping.field_renames() == {"receipts": {"REFNO": "CHECKNO"}}
    assert mapping.relay == {"portal": "https://portal.example"}
    monkeypatch.setenv("MY_AGENT_KEY", "s3cret")
    assert api_key_matches("s3cret", mapping.api_key_hash())
    assert not api_key_matches("wrong", mapping.api_key_hash())


def test_every_mistake_is_listed_at_once_with_its_key(tmp_path):
    found = problems(
        tmp_path,
        """
        [sage]
        store = "dbf"
        data = "nowhere"
        companies = ["1", "01"]
        receipt_mode = "staged"
        [agent]
        user = "TOOLONG"
        time_zone = "Mars/Olympus"
        scan_interval = 0
        [http]
        bind = "8765"
        api_key_sha256 = "abc"
        [tables.invoices]
        physical = "ARMAST"
        [tables.invoices.fields]
        NOSUCH = "X"
        [tables.ledger]
        physical = "GL"
        [extra]
        """,
    )
    text = "\n".join(found)
    for expected in [
        "sage.store = 'dbf'",
        "sage.data = 'nowhere'",
        "sage.companies[0]",
        "sage.receipt_mode = 'staged': only \"direct\" is implemented",
        "agent.user = 'TOOLONG'",
        "agent.journal is missing",
        "agent.time_zone",
        "agent.scan_interval",
        "http.bind",
        "http.api_key_sha256 must be 64 hex digits",
        "tables.invoices.physical",
        "tables.invoices.fields.NOSUCH",
        "[tables.ledger]",
        "[extra]",
    ]:
        assert expected in text, expected
    assert len(found) == 14


def test_a_missing_file_or_bad_toml_says_so(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load(tmp_path / "nope.toml")
    (tmp_path / "bad.toml").write_text("[sage\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load(tmp_path / "bad.toml")


def test_wrong_types_are_named(tmp_path):
    found = problems(
        tmp_path,
        """
        [sage]
        store = 5
        data = "sage"
        [agent]
        user = "AGNT"
        journal = "j.sqlite3"
        watchdog_interval = "often"
        """,
    )
    assert "sage.store must be a str, not 5" in found
    assert "agent.watchdog_interval must be a int or float, not 'often'" in found


def test_the_journal_must_not_live_on_the_sage_share(tmp_path):
    found = problems(
        tmp_path,
        """
        [sage]
        store = "fixture"
        data = "sage"
        [agent]
        user = "AGNT"
        journal = "sage/journal.sqlite3"
        """,
    )
    assert found == [
        "agent.journal is inside sage.data: keep it on the agent's own disk"
    ]


def test_the_shipped_example_is_valid_apart_from_its_windows_paths():
    import tomllib

    from sagepro_agent.config import example_path

    with open(example_path(), "rb") as fh:
        raw = tomllib.load(fh)
    with pytest.raises(ConfigError) as info:
        parse(raw, example_path())
    assert [p for p in info.value.problems if not p.startswith("sage.data")] == []


def test_key_hash_is_sha256_hex():
    assert hash_api_key("abc") == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )
    assert not api_key_matches("abc", "")


def test_the_fixture_store_takes_no_renames(tmp_path):
    found = problems(tmp_path, VALID.replace('store = "vfpoledb"', 'store = "fixture"'))
    assert found == [
        "[tables.receipts]: the fixture store always uses the canonical layouts "
        "(sagepro_agent/layouts.py); site names and renames apply to "
        'store = "vfpoledb" only'
    ]
