"""Shared fixtures and the ``--runslow`` switch."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", default=False, help="also run tests marked slow")


def pytest_configure(config: pytest.Config) -> None:
    try:
        import torch

        torch.set_num_threads(int(os.environ.get("IE_ENV_THREADS", "1")))
    except ImportError:
        pass


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--runslow"):
        return
    skip_slow = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail a run that collected or passed nothing, so CI never goes green on zero tests."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    passed = len(reporter.stats.get("passed", [])) if reporter is not None else 0
    if exitstatus == 0 and (session.testscollected == 0 or passed == 0):
        session.exitstatus = pytest.ExitCode.NO_TESTS_COLLECTED
