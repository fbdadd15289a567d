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


def test_paper_table_runs_its_configs_and_writes_markdown(tmp_path, tiny_config) -> None:
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "tiny-1mask.yaml").write_text(tiny_config.read_text())
    out = tmp_path / "table.md"
    args = [sys.executable, str(REPO / "scripts" / "paper_table.py"), "--configs", str(configs),
            "--runs", str(tmp_path / "runs"), "--out", str(out), "--set", "train.epochs=1"]  # fmt: skip
    result = subprocess.run(args, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    table = out.read_text()
    assert "| tiny-1mask | 16x16 | 1 |" in table and "exact, single mask" in table
    assert "1 / 1" in table  # best epoch / epochs run
