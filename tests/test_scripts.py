"""The scripts in scripts/ run (tiny sizes; their numbers are for people, not for asserts)."""

import subprocess
import sys

from .conftest import REPO


def test_benchmark_runs_quick() -> None:
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "benchmark.py"), "--quick"],
                            capture_output=True, text=True, timeout=300, cwd=REPO)  # fmt: skip
    assert result.returncode == 0, result.stderr
    for section in ("training", "sampling 64", "evaluating 1000 rows"):
        assert section in result.stdout
    assert "ratio" in result.stdout and "speed-up" in result.stdout
