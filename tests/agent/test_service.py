"""The Windows service wrapper, on Linux with stand-ins for pywin32's modules.

What these tests cannot show: that pythonservice.exe loads the class, that Windows
accepts the account and start type, that the event log receives the messages. Those
run only on Windows (the last test) and in the site acceptance.
"""

import importlib
import logging
import sys
import threading
import types

import pytest

from sagepro_agent import service
from sagepro_agent.service import __main__ as service_cli

STOPPED, START_PENDING, STOP_PENDING, RUNNING = 1, 2, 3, 4


class FakePywin32:
    """Records every call the service module makes into pywin32."""

    def __init__(self):
        self.calls = []
        self.options = {}
        self.events = []
        self.state = RUNNING

    def modules(self):
        fake = self

        class ServiceFramework:
            def __init__(self, args):
                self.reported = []

            def ReportServiceStatus(self, status, waitHint=5000, **_):  # noqa: N802
                self.reported.append((status, waitHint))

        win32serviceutil = types.ModuleType("win32serviceutil")
        win32serviceutil.ServiceFramework = ServiceFramework
        win32serviceutil.InstallService = lambda *a, **k: fake.calls.append(
            ("install", a, k)
        )
        win32serviceutil.RemoveService = lambda name: fake.calls.append(
            ("remove", name)
        )
        win32serviceutil.StartService = lambda name: fake.calls.append(("start", name))

        def stop_service(name):
            fake.calls.append(("stop", name))
            raise OSError(1062, "StopService", "The service has not been started.")

        win32serviceutil.StopService = stop_service
        win32serviceutil.QueryServiceStatus = lambda name: (
            16,
            fake.state,
            0,
            0,
            0,
            0,
            0,
        )
        win32serviceutil.GetServiceClassString = lambda cls: (
            f"{cls.__module__}.{cls.__name__}"
        )

        def set_option(name, option, value):
            fake.options[(name, option)] = value

        def get_option(name, option, default=None):
            return fake.options.get((name, option), default)

        win32serviceutil.SetServiceCustomOption = set_option
        win32serviceutil.GetServiceCustomOption = get_option

        win32service = types.ModuleType("win32service")
        win32service.SERVICE_STOPPED = STOPPED
        win32service.SERVICE_START_PENDING = START_PENDING
        win32service.SERVICE_STOP_PENDING = STOP_PENDING
        win32service.SERVICE_RUNNING = RUNNING
        win32service.SERVICE_AUTO_START = 2
        win32service.SERVICE_DEMAND_START = 3

        servicemanager = types.ModuleType("servicemanager")
        servicemanager.LogInfoMsg = lambda m: fake.events.append(("info", m))
        servicemanager.LogErrorMsg = lambda m: fake.events.append(("error", m))
        return {
            "win32serviceutil": win32serviceutil,
            "win32service": win32service,
            "servicemanager": servicemanager,
        }


@pytest.fixture
def pywin32(monkeypatch):
    fake = FakePywin32()
    for name, module in fake.modules().items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.delitem(sys.modules, "sagepro_agent.service.windows", raising=False)
    yield fake
    sys.modules.pop("sagepro_agent.service.windows", None)
    vars(service).pop("windows", None)


@pytest.fixture
def windows(pywin32):
    return importlib.import_module("sagepro_agent.service.windows")


@pytest.fixture
def site(tmp_path, monkeypatch):
    path = tmp_path / "site.toml"
    path.write_text("# stands for a valid site mapping\n")
    monkeypatch.setattr(service_cli, "validate_config", lambda p: [])
    return path


@pytest.fixture(autouse=True)
def keep_root_logger():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)


def test_install_registers_the_class_with_the_site_mapping(pywin32, site, capsys):
    assert service_cli.main(["install", "--config", str(site)]) == 0
    [(what, args, kwargs)] = pywin32.calls
    assert what == "install"
    assert args == (
        "sagepro_agent.service.windows.AgentService",
        "SageProAgent",
        "Sage Pro agent (payments portal)",
    )
    assert kwargs["startType"] == 2 and kwargs["delayedstart"] is False
    assert kwargs["userName"] is None and kwargs["password"] is None
    assert pywin32.options == {
        ("SageProAgent", "config"): str(site),
        ("SageProAgent", "mode"): "relay",
        ("SageProAgent", "log_dir"): str(site.parent / "logs"),
    }
    out = capsys.readouterr().out
    assert "LocalSystem" in out and "installed (relay, auto start)" in out


def test_install_with_an_account_asks_for_its_password(pywin32, site, monkeypatch):
    monkeypatch.setattr(service_cli.getpass, "getpass", lambda prompt: "s3cret")
    argv = ["install", "--config", str(site), "--username", r"CORP\svc-sage"]
    argv += [
        "--startup",
        "delayed",
        "--name",
        "SageProAgent02",
        "--log-dir",
        "D:\\logs",
        "--mode",
        "http",
    ]
    assert service_cli.main(argv) == 0
    [(_, args, kwargs)] = pywin32.calls
    assert args[1:] == (
        "SageProAgent02",
        "Sage Pro agent (payments portal) (SageProAgent02)",
    )
    assert (kwargs["userName"], kwargs["password"]) == (r"CORP\svc-sage", "s3cret")
    assert kwargs["delayedstart"] is True
    assert pywin32.options[("SageProAgent02", "log_dir")] == "D:\\logs"
    assert pywin32.options[("SageProAgent02", "mode")] == "http"


def test_install_refuses_a_site_mapping_that_does_not_load(pywin32, tmp_path, capsys):
    missing = tmp_path / "nowhere.toml"
    assert service_cli.main(["install", "--config", str(missing)]) == 2
    assert "the file does not exist" in capsys.readouterr().err
    broken = tmp_path / "broken.toml"
    broken.write_text("this is = = not toml\n")
    assert service_cli.main(["install", "--config", str(broken)]) == 2
    assert "not usable yet" in capsys.readouterr().err
    assert pywin32.calls == []


def test_control_commands_pass_the_service_name(pywin32, capsys):
    assert service_cli.main(["start", "--name", "SageProAgent02"]) == 0
    assert service_cli.main(["remove"]) == 0
    assert service_cli.main(["status"]) == 0
    assert "SageProAgent: running" in capsys.readouterr().out
    # Windows' refusal is reported, not raised.
    assert service_cli.main(["stop"]) == 1
    assert "has not been started" in capsys.readouterr().err
    assert pywin32.calls == [
        ("start", "SageProAgent02"),
        ("remove", "SageProAgent"),
        ("stop", "SageProAgent"),
    ]


def test_without_pywin32_the_commands_say_what_is_needed(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "win32serviceutil", None)
    monkeypatch.delitem(sys.modules, "sagepro_agent.service.windows", raising=False)
    assert service_cli.main(["start"]) == 2
    assert "need Windows with pywin32" in capsys.readouterr().err


def test_stop_request_ends_the_serve_loop(
    windows, pywin32, site, tmp_path, monkeypatch
):
    pywin32.options[("SageProAgent", "config")] = str(site)
    pywin32.options[("SageProAgent", "log_dir")] = str(tmp_path / "logs")
    seen = {}

    def serve(config_path, stop_event, mode):
        seen["config"] = config_path
        seen["mode"] = mode
        logging.getLogger("sagepro_agent").info("serving")
        stop_event.wait(10)
        seen["stopped"] = stop_event.is_set()
        return 0

    monkeypatch.setattr(service, "run_agent", serve)
    agent_service = windows.AgentService(["SageProAgent"])
    runner = threading.Thread(target=agent_service.SvcDoRun)
    runner.start()
    agent_service.SvcStop()
    runner.join(5)
    assert not runner.is_alive()
    assert seen == {"config": str(site), "mode": "relay", "stopped": True}
    assert agent_service.reported == [(STOP_PENDING, 30_000)]
    assert [kind for kind, _ in pywin32.events] == ["info", "info"]
    assert "stopped" in pywin32.events[-1][1]
    log_text = (tmp_path / "logs" / "agent.log").read_text()
    assert "serving" in log_text and "Z INFO" in log_text  # UTC timestamps


def test_a_failing_agent_fails_the_service_with_a_logged_reason(
    windows, pywin32, site, tmp_path, monkeypatch
):
    pywin32.options[("SageProAgent", "config")] = str(site)
    pywin32.options[("SageProAgent", "log_dir")] = str(tmp_path / "logs")

    def broken(config_path, stop_event, mode):
        raise RuntimeError("journal is on a network drive")

    monkeypatch.setattr(service, "run_agent", broken)
    with pytest.raises(RuntimeError, match="network drive"):
        windows.AgentService(["SageProAgent"]).SvcDoRun()
    kind, message = pywin32.events[-1]
    assert kind == "error" and "journal is on a network drive" in message
    assert (
        "journal is on a network drive" in (tmp_path / "logs" / "agent.log").read_text()
    )


def test_a_service_without_a_site_mapping_says_how_to_fix_it(windows, pywin32):
    with pytest.raises(RuntimeError, match="install --config"):
        windows.AgentService(["SageProAgent"]).SvcDoRun()
    assert pywin32.events[-1][0] == "error"


def test_run_in_the_foreground_uses_the_same_loop(site, monkeypatch):
    calls = []
    monkeypatch.setattr(
        service,
        "run_agent",
        lambda path, stop, mode: calls.append((path, stop, mode)) or 0,
    )
    monkeypatch.setattr(service_cli.signal, "signal", lambda *a: None)
    assert service_cli.main(["run", "--config", str(site), "--mode", "http"]) == 0
    [(path, stop, mode)] = calls
    assert path == str(site) and isinstance(stop, threading.Event) and mode == "http"


def test_http_mode_runs_the_agents_serve_loop(monkeypatch):
    from sagepro_agent import agent

    calls = []
    monkeypatch.setattr(agent, "run", lambda path, stop: calls.append(path) or 0)
    assert service.run_agent("C:/site.toml", threading.Event(), "http") == 0
    assert calls == ["C:/site.toml"]


def test_relay_mode_runs_the_relay_client_until_stopped(monkeypatch):
    from sagepro_agent.relay import client

    stop = threading.Event()
    calls = []

    def run(path, event):
        calls.append((path, event))
        event.wait(30)  # the client serves until the service's stop request
        return 0

    monkeypatch.setattr(client, "run", run)
    threading.Timer(0.2, stop.set).start()
    assert service.run_agent("C:/site.toml", stop, "relay") == 0
    assert calls == [("C:/site.toml", stop)]


def test_a_relay_client_that_ends_ends_the_service(monkeypatch):
    from sagepro_agent.relay import client

    monkeypatch.setattr(client, "run", lambda path, event: 3)  # credentials revoked
    assert service.run_agent("C:/site.toml", threading.Event(), "relay") == 3


def test_an_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="unknown service mode"):
        service.run_agent("C:/site.toml", threading.Event(), "smtp")


@pytest.mark.skipif(sys.platform != "win32", reason="needs Windows and pywin32")
def test_the_real_pywin32_accepts_the_service_class():
    pytest.importorskip("win32serviceutil")
    import win32serviceutil

    windows = importlib.import_module("sagepro_agent.service.windows")
    assert issubclass(windows.AgentService, win32serviceutil.ServiceFramework)
    assert win32serviceutil.GetServiceClassString(windows.AgentService).endswith(
        "windows.AgentService"
    )
