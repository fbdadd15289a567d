"""The MAF benchmarks' loaders (benchmarks.py) on small files in the archive's own formats."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pytest
from typer.testing import CliRunner

from made_cli.benchmarks import benchmark_files, load_benchmark
from made_cli.cli import app
from made_cli.config import load_config
from made_cli.data import load_dataset
from made_cli.errors import UsageError

runner = CliRunner()


def _place(root: Path, name: str) -> list[Path]:
    files = benchmark_files(name, root)
    for f in files:
        f.parent.mkdir(parents=True, exist_ok=True)
    return files


def test_power_drops_two_columns_adds_the_authors_noise_and_standardises_with_train_and_valid(
    tmp_path: Path,
) -> None:
    n = 1000
    raw = np.random.default_rng(0).normal(size=(n, 8))
    raw[:, [1, 3]] = np.nan  # dropped columns: any of them left would show as NaN
    raw[:, 2] = 5.0  # voltage, constant: what varies is the noise
    raw[:, 0] = 1.0  # active power, constant
    raw[:, 7] = np.arange(n) % 3  # time: three values, no noise
    (path,) = _place(tmp_path, "power")
    np.save(path, raw)
    train, valid, test = load_benchmark("power", tmp_path)
    assert (len(test), len(valid), len(train)) == (100, 90, 810) and train.shape[1] == 6
    assert all(np.isfinite(s).all() for s in (train, valid, test))
    both = np.vstack((train, valid)).astype(np.float64)
    assert np.allclose(both.mean(0), 0, atol=1e-5) and np.allclose(both.std(0), 1, atol=1e-4)
    rng = np.random.RandomState(42)  # the authors' draws, in their order
    rng.shuffle(np.arange(n))
    voltage, active = 0.01 * rng.rand(n), 0.001 * rng.rand(n)
    data = np.vstack((train, valid, test))
    assert np.corrcoef(data[:, 1], voltage)[0, 1] > 0.9999  # column 1 is voltage + its noise
    assert np.corrcoef(data[:, 0], active)[0, 1] > 0.9999
    assert len(np.unique(data[:, 5])) == 3 and len(np.unique(data[:, 2])) > 900  # time: no noise


def test_hepmass_keeps_signal_drops_discrete_columns_and_splits_validation_from_train(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)

    def rows(n: int, extra: bool) -> pa.Table:
        label = (np.arange(n) % 2).astype(float)  # half signal
        features = rng.normal(size=(n, 4))
        features[:, 2] = np.where(rng.random(n) < 0.5, 0.0, rng.normal(size=n) + 3)  # its minimum, 0, repeats
        columns = {"# label": label, **{f"f{i}": features[:, i] for i in range(4)}}
        if extra:
            columns["mass"] = np.full(n, 1000.0)
        return pa.table(columns)

    train_path, test_path = _place(tmp_path, "hepmass")
    pcsv.write_csv(rows(400, False), train_path)
    pcsv.write_csv(rows(100, True), test_path)
    train, valid, test = load_benchmark("hepmass", tmp_path)
    assert train.shape[1] == valid.shape[1] == test.shape[1] == 3  # f2 dropped, the test's last column too
    assert (len(train), len(valid), len(test)) == (180, 20, 50)
    both = np.vstack((train, valid)).astype(np.float64)
    assert np.allclose(both.mean(0), 0, atol=1e-5) and np.allclose(both.std(0, ddof=1), 1, atol=1e-4)
    source = np.stack([pcsv.read_csv(train_path)[c].to_numpy() for c in ("# label", "f0", "f1", "f3")], 1)
    kept = source[source[:, 0] == 1][:, 1:]
    standardised = (kept - kept.mean(0)) / kept.std(0, ddof=1)
    assert np.allclose(valid, standardised[-20:], atol=1e-5)  # the last tenth, in file order


def test_miniboone_and_bsds300(tmp_path: Path) -> None:
    h5py = pytest.importorskip("h5py")
    raw = np.random.default_rng(2).normal(size=(500, 43)) * 7 + 3
    (path,) = _place(tmp_path, "miniboone")
    np.save(path, raw)
    train, valid, test = load_benchmark("miniboone", tmp_path)
    assert (len(train), len(valid), len(test)) == (405, 45, 50)
    both = np.vstack((train, valid)).astype(np.float64)
    assert np.allclose(both.mean(0), 0, atol=1e-5) and np.allclose(both.std(0), 1, atol=1e-4)
    assert np.allclose(test, (raw[-50:] - raw[:450].mean(0)) / raw[:450].std(0), atol=1e-5)
    (path,) = _place(tmp_path, "bsds300")
    parts = {
        k: np.random.default_rng(3).normal(size=(n, 63))
        for k, n in (("train", 30), ("validation", 5), ("test", 7))
    }
    with h5py.File(path, "w") as f:
        for k, v in parts.items():
            f[k] = v
    train, valid, test = load_benchmark("bsds300", tmp_path)
    assert np.allclose(train, parts["train"]) and np.allclose(test, parts["test"]) and valid.shape == (5, 63)


def test_a_benchmark_trains_through_the_cli(tmp_path: Path, monkeypatch) -> None:
    (path,) = _place(tmp_path, "miniboone")
    np.save(path, np.random.default_rng(4).normal(size=(300, 43)))
    monkeypatch.setenv("MADE_DATA_DIR", str(tmp_path))
    cfg = load_config(None, ["data.name=miniboone", "model.kind=maf", "model.hidden=[16]", "flow.layers=2"])
    assert load_dataset(cfg.data).features == 43
    config = tmp_path / "m.yaml"
    config.write_text("name: m\ndata: {name: miniboone}\nmodel: {kind: maf, hidden: [16]}\n"
                      "flow: {layers: 2}\ntrain: {epochs: 1}\n")  # fmt: skip
    result = runner.invoke(app, ["train", str(config), "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 0 and "miniboone (real), 243/27/30 rows of 43 dimensions" in result.output, (
        result.output
    )


def test_a_missing_archive_without_network_names_the_data_root_and_gas_is_refused(
    tmp_path: Path, monkeypatch
) -> None:
    def offline(url: str, dest: Path) -> None:
        raise OSError("no network")

    monkeypatch.setattr("made_cli.benchmarks.download", offline)
    monkeypatch.setenv("MADE_DATA_DIR", str(tmp_path))
    config = tmp_path / "p.yaml"
    config.write_text("name: p\ndata: {name: power}\nmodel: {kind: maf, hidden: [8]}\n")
    result = runner.invoke(app, ["train", str(config), "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.stderr
    assert str(tmp_path / "maf") in result.stderr and "no network" in result.stderr
    with pytest.raises(UsageError, match="pickled pandas DataFrame"):
        load_benchmark("gas", tmp_path)
