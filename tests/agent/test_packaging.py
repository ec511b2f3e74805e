"""The agent installs on its own: a wheel of `sagepro_agent/` into a fresh venv with no
dependencies at all, and every module imports there without Django."""

import json
import os
import shutil
import subprocess
import sys
import tomllib
from importlib.util import find_spec
from pathlib import Path

import pytest
import setuptools

ROOT = Path(__file__).resolve().parents[2]
AGENT = ROOT / "sagepro_agent"

# Third-party modules a fresh venv without dependencies lacks, each declared in
# sagepro_agent/pyproject.toml (a dependency or an extra): a module may fail to import
# for these and nothing else.
DECLARED_ELSEWHERE = {
    "requests",
    "dbflib",
    "waitress",
    "keyring",
    "adodbapi",
    "pythoncom",
    "pywintypes",
    "servicemanager",
    "win32api",
    "win32cred",
    "win32event",
    "win32service",
    "win32serviceutil",
}

IMPORT_EVERYTHING = """
import importlib, json, pkgutil, sys
import sagepro_agent, sagepro_agent.store.base
allowed = set(sys.argv[1].split(","))
report = {"file": sagepro_agent.__file__, "imported": [], "missing": {}, "failed": {}}
for info in pkgutil.walk_packages(sagepro_agent.__path__, "sagepro_agent."):
    try:
        importlib.import_module(info.name)
        report["imported"].append(info.name)
    except ModuleNotFoundError as exc:
        top = (exc.name or "").split(".")[0]
        (report["missing"] if top in allowed else report["failed"])[info.name] = str(exc)
    except Exception as exc:
        report["failed"][info.name] = repr(exc)
report["django"] = sorted(m for m in sys.modules if m.split(".")[0] == "django")
print(json.dumps(report))
"""


def can_build_wheels_offline():
    if find_spec("wheel") is not None:
        return True
    major, minor = (int(p) for p in setuptools.__version__.split(".")[:2])
    return (major, minor) >= (70, 1)  # bdist_wheel moved into setuptools


def run(*argv, cwd):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    done = subprocess.run(
        [str(a) for a in argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"{argv}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_every_package_folder_is_listed_in_the_agents_pyproject():
    listed = set(
        tomllib.loads((AGENT / "pyproject.toml").read_text())["tool"]["setuptools"][
            "packages"
        ]
    )
    found = {
        ".".join(("sagepro_agent", *init.parent.relative_to(AGENT).parts))
        for init in AGENT.rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    assert found == listed


@pytest.mark.slow
@pytest.mark.skipif(
    not can_build_wheels_offline(),
    reason="building a wheel offline needs the 'wheel' package or setuptools>=70.1",
)
def test_the_wheel_installs_alone_and_imports_without_django(tmp_path):
    source = tmp_path / "src" / "sagepro_agent"
    shutil.copytree(
        AGENT,
        source,
        ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info"),
    )
    run(
        sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
        "--no-index", "--quiet", source, "-w", tmp_path / "dist", cwd=tmp_path,
    )  # fmt: skip
    [wheel] = (tmp_path / "dist").glob("sagepro_agent-*.whl")

    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path)
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    run(
        sys.executable, "-m", "pip", "--python", python, "install", "--no-deps",
        "--no-index", "--quiet", wheel, cwd=tmp_path,
    )  # fmt: skip

    report = json.loads(
        run(
            python,
            "-I",
            "-c",
            IMPORT_EVERYTHING,
            ",".join(DECLARED_ELSEWHERE),
            cwd=tmp_path,
        )
    )
    assert report["file"].startswith(str(venv))  # the installed copy, not the clone
    assert report["failed"] == {}
    assert report["django"] == []
    for module in (
        "sagepro_agent.store.base",
        "sagepro_agent.store.vfpoledb.store",
        "sagepro_agent.service.__main__",
        "sagepro_agent.wire",
    ):
        assert module in report["imported"]
    # Without pywin32 the Windows service module cannot import, and says why.
    assert "servicemanager" in report["missing"]["sagepro_agent.service.windows"]
    installed = Path(report["file"]).parent
    assert (installed / "site.example.toml").is_file()

    scripts = venv / ("Scripts" if os.name == "nt" else "bin")
    out = run(scripts / "sagepro-agent", "--version", cwd=tmp_path)
    assert out.strip().startswith("sagepro_agent ")
    assert "install" in run(scripts / "sagepro-agent-service", "--help", cwd=tmp_path)
