"""The distribution installs ``agents/`` and ``experiments/`` under ``ie_env``, claiming no generic names."""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
IMPORT_CHECK = (
    "import importlib.util, ie_env.agents, ie_env.experiments.explore;"
    "assert importlib.util.find_spec('agents') is None, 'a top-level agents package is importable';"
    "assert importlib.util.find_spec('experiments') is None, 'a top-level experiments package is importable';"
    "print(ie_env.agents.__file__)"
)


def _run_elsewhere(tmp_path: Path, pythonpath: str | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_CHECK],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_every_package_folder_is_listed_in_setup_cfg():
    parser = configparser.ConfigParser()
    parser.read(REPO / "setup.cfg")
    listed = set(parser["options"]["packages"].split())
    on_disk = {
        "ie_env." + ".".join(p.parent.relative_to(REPO / "ie_env").parts)
        for p in (REPO / "ie_env").rglob("__init__.py")
    }
    on_disk = {p.rstrip(".") for p in on_disk} | {"ie_env.agents", "ie_env.experiments"}
    on_disk = {"ie_env" if p == "ie_env." else p for p in on_disk}
    assert on_disk == listed
    for folder in ("agents", "experiments"):
        assert (REPO / folder / "__init__.py").is_file()


def test_the_editable_install_imports_under_the_ie_env_namespace(tmp_path):
    path = _run_elsewhere(tmp_path)
    assert Path(path).resolve() == (REPO / "agents" / "__init__.py").resolve()


@pytest.mark.skipif(
    subprocess.run([sys.executable, "-c", "import setuptools"], capture_output=True).returncode != 0,
    reason="setuptools is not installed in this environment",
)
def test_a_regular_wheel_install_imports_and_ships_no_top_level_agents(tmp_path):
    source = tmp_path / "source"  # a copy, so the build leaves nothing in the checkout
    source.mkdir()
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    for folder in ("ie_env", "agents", "experiments"):
        shutil.copytree(REPO / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    wheels = tmp_path / "wheels"
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(wheels),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = wheels.glob("ie_env-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/", 1)[0] for name in names if "/" in name and ".dist-info" not in name}
    assert tops == {"ie_env"}
    assert "ie_env/agents/__init__.py" in names and "ie_env/experiments/explore.py" in names
    site = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert install.returncode == 0, install.stderr
    path = _run_elsewhere(tmp_path, pythonpath=str(site))
    assert Path(path).resolve() == (site / "ie_env" / "agents" / "__init__.py").resolve()
