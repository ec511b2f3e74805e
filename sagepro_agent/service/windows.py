"""The Windows service (pywin32). Imported only on Windows, by `__main__.py` and by
pythonservice.exe when the Service Control Manager starts the service.

The service's settings live in the registry next to its definition
(`win32serviceutil.SetServiceCustomOption`): `config`, the absolute path of the site
mapping, `mode` (`relay` or `http`) and `log_dir`. Nothing secret is stored there: the portal credentials are in
the Windows credential store (see `sagepro_agent.relay.credentials`).
"""

from __future__ import annotations

import logging
import threading
import traceback

import servicemanager  # type: ignore[import-not-found]
import win32service  # type: ignore[import-not-found]
import win32serviceutil  # type: ignore[import-not-found]

from sagepro_agent import service

log = logging.getLogger("sagepro_agent.service")

STOP_WAIT_HINT_MS = 30_000  # how long Windows should wait for the agent to stop
STARTUP = {
    "auto": (win32service.SERVICE_AUTO_START, False),
    "delayed": (win32service.SERVICE_AUTO_START, True),
    "manual": (win32service.SERVICE_DEMAND_START, False),
}
STATES = {
    win32service.SERVICE_STOPPED: "stopped",
    win32service.SERVICE_START_PENDING: "starting",
    win32service.SERVICE_STOP_PENDING: "stopping",
    win32service.SERVICE_RUNNING: "running",
}


class AgentService(win32serviceutil.ServiceFramework):
    _svc_name_ = service.SERVICE_NAME
    _svc_display_name_ = service.DISPLAY_NAME
    _svc_description_ = service.DESCRIPTION

    def __init__(self, args: list[str]) -> None:
        super().__init__(args)
        self.name = args[0] if args else self._svc_name_
        self.stop_event = threading.Event()

    def SvcStop(self) -> None:  # noqa: N802 (pywin32's name)
        """Windows asks the service to stop: the serve loop sees the event, finishes
        the request in hand and returns. An unfinished receipt is safe either way: the
        journal finishes or flags it on the next start."""
        self.ReportServiceStatus(
            win32service.SERVICE_STOP_PENDING, waitHint=STOP_WAIT_HINT_MS
        )
        self.stop_event.set()

    SvcShutdown = SvcStop  # the machine is shutting down

    def SvcDoRun(self) -> None:  # noqa: N802 (pywin32's name)
        config = win32serviceutil.GetServiceCustomOption(self.name, "config")
        if not config:
            message = (
                f"service {self.name} has no site mapping: reinstall it with "
                "python -m sagepro_agent.service install --config <site.toml>"
            )
            servicemanager.LogErrorMsg(message)
            raise RuntimeError(message)
        log_dir = win32serviceutil.GetServiceCustomOption(
            self.name, "log_dir", service.default_log_dir(config)
        )
        mode = win32serviceutil.GetServiceCustomOption(self.name, "mode", "relay")
        service.configure_logging(log_dir)
        servicemanager.LogInfoMsg(
            f"{self.name} starting ({mode}) with {config}; logs in {log_dir}"
        )
        log.info("service %s starting (%s) with %s", self.name, mode, config)
        try:
            code = service.run_agent(config, self.stop_event, mode)
        except Exception:
            log.exception("service %s failed", self.name)
            servicemanager.LogErrorMsg(
                f"{self.name} failed; see {log_dir}\n{traceback.format_exc()}"
            )
            raise  # the SCM records the failure and applies the recovery actions
        log.info("service %s stopped (exit code %s)", self.name, code)
        servicemanager.LogInfoMsg(f"{self.name} stopped")


def install(
    config_path: str,
    *,
    name: str = service.SERVICE_NAME,
    username: str | None = None,
    password: str | None = None,
    startup: str = "auto",
    log_dir: str | None = None,
    mode: str = "relay",
) -> None:
    start_type, delayed = STARTUP[startup]
    win32serviceutil.InstallService(
        win32serviceutil.GetServiceClassString(AgentService),
        name,
        service.DISPLAY_NAME
        if name == service.SERVICE_NAME
        else f"{service.DISPLAY_NAME} ({name})",
        startType=start_type,
        userName=username,
        password=password,
        description=service.DESCRIPTION,
        delayedstart=delayed,
    )
    win32serviceutil.SetServiceCustomOption(name, "config", config_path)
    win32serviceutil.SetServiceCustomOption(name, "mode", mode)
    win32serviceutil.SetServiceCustomOption(
        name, "log_dir", log_dir or service.default_log_dir(config_path)
    )


def remove(name: str = service.SERVICE_NAME) -> None:
    win32serviceutil.RemoveService(name)


def start(name: str = service.SERVICE_NAME) -> None:
    win32serviceutil.StartService(name)


def stop(name: str = service.SERVICE_NAME) -> None:
    win32serviceutil.StopService(name)


def status(name: str = service.SERVICE_NAME) -> str:
    state = win32serviceutil.QueryServiceStatus(name)[1]
    return STATES.get(state, f"state {state}")
