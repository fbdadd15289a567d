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


def test_no_run_falls_off_the_chart() -> None:
    """A short run far above a long one, and a VAE's -ELBO beside a flow's NLL: every run's best
    and last epochs lie within the y-axis."""
    from made_cli.plots import Curves, y_limits

    long = Curves(
        "long",
        "NLL",
        list(range(1, 101)),
        [2.5 - i / 400 for i in range(100)],
        [2.4 - i / 500 for i in range(100)],
    )
    short = Curves("short", "NLL", [1, 2, 3, 4], [9.0, 7.0, 6.0, 5.5], [8.0, 6.5, 6.0, 5.8], 6.1, 3)
    vae = Curves("vae", "-ELBO", [1, 2], [9.0, 8.0], [8.5, 7.9])
    for runs in ([long, short], [long, vae], [short]):
        low, high = y_limits(runs)
        for c in runs:
            assert low <= min(c.valid) <= high and low <= c.valid[-1] <= high, c.name


def test_a_bad_metrics_line_and_a_folder_that_is_no_run(tmp_path: Path, tiny_config: Path) -> None:
    run = _train(tmp_path, tiny_config, "r")
    lines = (run / "metrics.jsonl").read_text().splitlines()
    (run / "metrics.jsonl").write_text("\n".join([lines[0], "{oops", *lines[1:]]) + "\n")
    bad = runner.invoke(app, ["plot", str(run)])
    assert bad.exit_code == 2 and "metrics.jsonl, line 2: not JSON" in bad.stderr
    none = runner.invoke(app, ["plot", str(run / "checkpoints")])
    assert none.exit_code == 2 and "is not a run directory" in none.stderr


def test_tensorboard_switched_on_when_a_finished_run_resumes(tmp_path: Path, tiny_config: Path) -> None:
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    run = _train(tmp_path, tiny_config, "late", "train.epochs=2")
    assert runner.invoke(app, ["train", "--resume", str(run), "train.tensorboard=true"]).exit_code == 0
    again = runner.invoke(app, ["train", "--resume", str(run), "train.epochs=3"])
    assert again.exit_code == 0, again.output
    assert (
        len(list((run / "tensorboard").glob("events.out.tfevents.*"))) == 1
    )  # the old writer's file is gone
    board = event_accumulator.EventAccumulator(str(run / "tensorboard"))
    board.Reload()
    assert [s.step for s in board.Scalars("valid/nll")] == [1, 2, 3]
    assert [s.step for s in board.Scalars("test/nll")] == [json.loads(line)["epoch"] for line in
                                                          (run / "metrics.jsonl").read_text().splitlines()
                                                          if json.loads(line)["split"] == "test"]  # fmt: skip


def test_a_tables_samples_need_no_data_file_and_any_label_works(tmp_path: Path) -> None:
    from .test_tables import _config, _shop, _write

    data = _shop(300)
    data["part"] = np.where(
        data["channel"] == "online", "train", np.array(["train", "valid", "test"])[np.arange(300) % 3]
    )
    path = _write(tmp_path / "shop.csv", data)
    config = _config(tmp_path, path)
    run = tmp_path / "run"
    assert (
        runner.invoke(app, ["train", str(config), "data.split_column=part", "--run-dir", str(run)]).exit_code
        == 0
    )
    online = runner.invoke(app, ["sample", str(run), "--n", "50", "--label", "online"])  # no online test row
    assert online.exit_code == 0 and "seed0-n50-labelonline.png" in online.output, online.output
    path.unlink()
    gone = runner.invoke(app, ["sample", str(run), "--n", "20"])
    assert gone.exit_code == 0 and "no pair plot" in gone.output and "seed0-n20.csv" in gone.output, (
        gone.output
    )
    assert not (run / "samples" / "seed0-n20.png").exists()
