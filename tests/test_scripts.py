"""The scripts in scripts/ run (tiny sizes; their numbers are for people, not for asserts)."""

import subprocess
import sys

from .conftest import REPO


def test_benchmark_runs_quick() -> None:
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "benchmark.py"), "--quick"],
                            capture_output=True, text=True, timeout=300, cwd=REPO)  # fmt: skip
    assert result.returncode == 0, result.stderr
    for section in ("training", "sampling 64", "mixture log p(x) of 1000 rows", "32 masks 2x8000 + d"):
        assert section in result.stdout
    assert "ratio" in result.stdout and "speed-up" in result.stdout


def test_benchmark_times_block_counts_and_the_paper_model_quick() -> None:
    script = str(REPO / "scripts" / "benchmark.py")
    for flag, expected in (("--block-counts", "1x2000 + direct"), ("--paper-model", "100 epochs")):
        result = subprocess.run([sys.executable, script, "--quick", flag],
                                capture_output=True, text=True, timeout=300, cwd="/")  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert expected in result.stdout, flag


def test_benchmark_compares_both_flows_with_zuko() -> None:
    script = str(REPO / "scripts" / "benchmark.py")
    result = subprocess.run([sys.executable, script, "--quick", "--flows-only"],
                            capture_output=True, text=True, timeout=300, cwd=REPO)  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if "zuko" in line]  # nflows' rows too, if installed
    for measure in (
        "same loop, same fused Adam",
        "as its users run it",
        "log p(x), 1000 rows",
        "sampling 20 rows",
    ):
        assert sum(measure in row for row in rows) == 2, measure  # zuko's MAF row and its NSF row
    assert any("NSF" in row for row in rows)


def test_flow_quality_runs_quick() -> None:
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "flow_quality.py"), "--quick"],
                            capture_output=True, text=True, timeout=300, cwd=REPO)  # fmt: skip
    assert result.returncode == 0, result.stderr
    for name in ("checkerboard", "eight_gaussians", "wine", "breast_cancer"):
        assert f"| {name} |" in result.stdout  # a row of the closing table
    assert "made - zuko" in result.stdout and "nan" not in result.stdout


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


def test_example_table_writes_its_files_and_its_true_law_is_normalised(tmp_path) -> None:
    import importlib.util

    import numpy as np
    import pyarrow.csv as pcsv

    script = REPO / "scripts" / "example_table.py"
    result = subprocess.run([sys.executable, str(script), str(tmp_path), "--rows", "500"],
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr
    table = pcsv.read_csv(tmp_path / "transactions.csv")
    assert table.column_names == ["id", "channel", "merchant", "hour", "items", "amount"]
    assert pcsv.read_csv(tmp_path / "new.csv").num_rows == 1000
    spec = importlib.util.spec_from_file_location("example_table", script)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    # sum over merchants, hours and items, integrate over the amount: 1 for each channel
    amount = np.geomspace(0.5, 5e4, 4001)
    for channel in ("online", "store"):
        total = 0.0
        for merchant in example.MERCHANTS:
            for hour in range(24):
                items = np.repeat(np.arange(1, 21), len(amount))
                n = len(items)
                rows = {"channel": np.full(n, channel), "merchant": np.full(n, merchant),
                        "hour": np.full(n, hour), "items": items, "amount": np.tile(amount, 20)}  # fmt: skip
                density = np.exp(example.true_log_prob(rows)).reshape(20, len(amount))
                total += np.trapezoid(density, amount, axis=1).sum()
        assert abs(total - 1) < 1e-3, (channel, total)


def test_imputation_quality_runs_quick(tmp_path) -> None:
    import pytest

    pytest.importorskip("sklearn")
    args = [sys.executable, str(REPO / "scripts" / "imputation_quality.py"), "--quick", "--tables", "wine",
            "--threads", "1", "--out", str(tmp_path)]  # fmt: skip
    result = subprocess.run(args, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert "| wine (142 / 12) | alcohol | RMSE |" in result.stdout and "CPU:" in result.stdout
