"""The test suite's own guard: a run that executes no test must not pass."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CONFTEST = Path(__file__).parent / "conftest.py"


def run_pytest(folder: Path) -> int:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(folder)],
        cwd=folder,
        capture_output=True,
        timeout=120,
    ).returncode


@pytest.mark.parametrize(
    ("tests", "expected"),
    [
        ("", pytest.ExitCode.NO_TESTS_COLLECTED),
        ("import pytest\n\n@pytest.mark.slow\ndef test_a():\n    pass\n", pytest.ExitCode.NO_TESTS_COLLECTED),
        ("def test_a():\n    assert True\n", pytest.ExitCode.OK),
        ("def test_a():\n    assert False\n", pytest.ExitCode.TESTS_FAILED),
    ],
    ids=["nothing-collected", "everything-skipped", "one-passes", "one-fails"],
)
def test_exit_code_of_a_run(tmp_path, tests, expected):
    shutil.copy(CONFTEST, tmp_path / "conftest.py")
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    slow: slow\n")
    if tests:
        (tmp_path / "test_sample.py").write_text(tests)
    assert run_pytest(tmp_path) == expected
