"""Training curves (`made plot`), TensorBoard scalars and a table's pair plot (plots.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from made_cli.cli import app
from made_cli.plots import read_curves

runner = CliRunner()


def _train(tmp_path: Path, tiny_config: Path, name: str, *overrides: str) -> Path:
    run = tmp_path / name
    result = runner.invoke(app, ["train", str(tiny_config), *overrides, "--run-dir", str(run)])
    assert result.exit_code == 0, result.output
    return run


def test_plot_draws_two_runs_into_one_png(tmp_path: Path, tiny_config: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    a = _train(tmp_path, tiny_config, "a")
    b = _train(tmp_path, tiny_config, "b", "train.lr=0.003", "train.epochs=3")
    curves = read_curves(b)
    records = [json.loads(line) for line in (b / "metrics.jsonl").read_text().splitlines()]
    assert curves.epochs == [1, 2, 3] and curves.valid == [r["nll"] for r in records if r["split"] == "valid"]
    assert curves.train == [r["train_nll"] for r in records if r["split"] == "valid"]
    assert curves.test == records[-1]["nll"] and curves.best_epoch == records[-1]["epoch"]
    result = runner.invoke(app, ["plot", str(a), str(b)])
    assert result.exit_code == 0 and "wrote curves.png" in result.output, result.output
    with Image.open(tmp_path / "curves.png") as picture:
        assert picture.size[0] > 600 and picture.size[1] > 400
    one = runner.invoke(app, ["plot", str(a), "--out", str(tmp_path / "one.png")])
    assert one.exit_code == 0 and (tmp_path / "one.png").is_file()
    assert runner.invoke(app, ["plot", str(a)]).exit_code == 0 and (a / "plots" / "curves.png").is_file()
    bad = runner.invoke(app, ["plot", str(a), "--out", "curves.pdf"])
    assert bad.exit_code == 2 and "--out must end in .png" in bad.stderr
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "config.yaml").write_text("name: empty\n")
    none = runner.invoke(app, ["plot", str(tmp_path / "empty")])
    assert none.exit_code == 2 and "no metrics.jsonl" in none.stderr


def test_tensorboard_scalars_equal_the_metrics(tmp_path: Path, tiny_config: Path) -> None:
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    run = _train(tmp_path, tiny_config, "tb", "train.tensorboard=true", "train.epochs=2")
    resumed = runner.invoke(app, ["train", "--resume", str(run), "train.epochs=3"])
    assert resumed.exit_code == 0, resumed.output
    board = event_accumulator.EventAccumulator(str(run / "tensorboard"))
    board.Reload()
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    valid = [r for r in records if r["split"] == "valid"]
    for tag, key, rows in (("valid/nll", "nll", valid), ("train/train_nll", "train_nll", valid),
                           ("test/nll", "nll", [r for r in records if r["split"] == "test"])):  # fmt: skip
        scalars = board.Scalars(tag)  # after the resumption: each epoch once (purged and rewritten)
        assert [s.step for s in scalars] == [r["epoch"] for r in rows], tag
        assert np.allclose([s.value for s in scalars], [r[key] for r in rows], rtol=1e-6), tag


def test_a_table_sample_draws_a_pair_plot(tmp_path: Path) -> None:
    from .test_tables import _config, _shop, _write

    run = tmp_path / "run"
    config = _config(tmp_path, _write(tmp_path / "shop.csv", _shop(300)))
    assert runner.invoke(app, ["train", str(config), "--run-dir", str(run)]).exit_code == 0
    result = runner.invoke(app, ["sample", str(run), "--n", "200"])
    assert result.exit_code == 0 and "seed0-n200.png" in result.output, result.output
    with Image.open(run / "samples" / "seed0-n200.png") as picture:
        assert picture.size[0] > 500 and picture.size[1] > 500
