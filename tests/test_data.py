"""Datasets: the real binarized MNIST copy, .amat parsing and download, .npz, synthetic."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from made_cli import data
from made_cli.config import DataConfig
from made_cli.errors import UsageError

from .conftest import all_binary


def test_binarized_mnist_matches_the_published_splits(data_root: Path) -> None:
    ds = data.load_dataset(DataConfig(root=str(data_root)))
    assert ds.train.shape == (50000, 784) and ds.valid.shape == (10000, 784)
    assert ds.test.shape == (10000, 784) and ds.image_shape == (28, 28)
    assert ds.train.mean() == pytest.approx(0.1306, abs=5e-5)
    assert ds.valid.mean() == pytest.approx(0.1311, abs=5e-5)
    assert ds.test.mean() == pytest.approx(0.1325, abs=5e-5)


def test_data_root_falls_back_to_env_then_the_run_then_cache(monkeypatch, tmp_path: Path) -> None:
    recorded = tmp_path / "recorded"
    (recorded / "binarized_mnist").mkdir(parents=True)
    assert data.data_root(DataConfig(root=str(tmp_path))) == tmp_path  # a new run: the config's
    monkeypatch.setenv("MADE_DATA_DIR", str(tmp_path / "env"))
    assert data.data_root(DataConfig(root=str(tmp_path))) == tmp_path
    assert data.data_root(DataConfig()) == tmp_path / "env"
    # a trained run: the environment says where the data is now, else where the run read it
    assert data.data_root(DataConfig(root=str(recorded)), str(recorded)) == tmp_path / "env"
    monkeypatch.delenv("MADE_DATA_DIR")
    assert data.data_root(DataConfig(root=str(recorded)), str(recorded)) == recorded
    assert data.data_root(DataConfig(), str(recorded)) == recorded
    assert data.data_root(DataConfig()) == Path("~/.cache/made").expanduser().resolve()
    with pytest.raises(UsageError, match="no longer holds it"):  # the data moved away
        data.data_root(DataConfig(name="mnist"), str(recorded))
    assert data.data_root(DataConfig(name="synthetic"), str(recorded)) is None  # no root to read


def _write_amat(path: Path, rows: np.ndarray) -> None:
    path.write_text("\n".join(" ".join(str(v) for v in r) for r in rows) + "\n")


def test_missing_amat_files_are_downloaded_from_the_url(monkeypatch, tmp_path: Path) -> None:
    source = tmp_path / "mirror"
    source.mkdir()
    rng = np.random.default_rng(0)
    for split in ("train", "valid", "test"):
        _write_amat(source / f"binarized_mnist_{split}.amat", rng.integers(0, 2, (3, 784)))
    monkeypatch.setattr(data, "BINARIZED_MNIST_URL", source.as_uri() + "/binarized_mnist_{split}.amat")
    ds = data.load_dataset(DataConfig(root=str(tmp_path / "root")))
    assert ds.train.shape == (3, 784)
    assert (tmp_path / "root" / "binarized_mnist" / "binarized_mnist_test.amat").exists()
    assert not list((tmp_path / "root" / "binarized_mnist").glob(".*.part"))


def test_no_data_and_no_network_says_where_to_put_files(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(data, "BINARIZED_MNIST_URL", (tmp_path / "absent").as_uri() + "/{split}")
    with pytest.raises(UsageError, match="put binarized_mnist_"):
        data.load_dataset(DataConfig(root=str(tmp_path)))


def test_corrupt_amat_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.amat"
    path.write_text("0 1 0\n1 1\n")
    with pytest.raises(UsageError, match=r"corrupt \.amat file"):
        data.read_amat(path, features=3)
    path.write_text("0 1 2\n")
    with pytest.raises(UsageError, match="characters other than"):
        data.read_amat(path, features=3)


def test_npz_user_data(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    path = tmp_path / "d.npz"
    np.savez(path, train=rng.integers(0, 2, (50, 16)), test=rng.integers(0, 2, (10, 16)))
    ds = data.load_dataset(DataConfig(name="npz", path=str(path)))
    assert ds.train.shape == (45, 16) and ds.valid.shape == (5, 16) and ds.image_shape == (4, 4)
    np.savez(path, train=rng.random((50, 16)), test=rng.integers(0, 2, (10, 16)))
    with pytest.raises(UsageError, match="values other than 0 and 1"):
        data.load_dataset(DataConfig(name="npz", path=str(path)))
    np.savez(path, train=rng.integers(0, 2, (50, 16)))
    with pytest.raises(UsageError, match="no array 'test'"):
        data.load_dataset(DataConfig(name="npz", path=str(path)))
    path.write_bytes(b"not a zip")
    with pytest.raises(UsageError, match="cannot read"):
        data.load_dataset(DataConfig(name="npz", path=str(path)))


def test_synthetic_law_is_normalised_and_its_entropy_exact() -> None:
    weights, probs = data.synthetic_distribution(6)
    logp = data.synthetic_log_prob(all_binary(6).double(), weights.double(), probs.double())
    assert math.isclose(float(logp.exp().sum()), 1.0, rel_tol=1e-9)
    ds = data.load_dataset(DataConfig(name="synthetic", features=6, size=20000))
    empirical = float(-data.synthetic_log_prob(ds.train, weights, probs).mean())
    assert empirical == pytest.approx(data.synthetic_entropy(6), abs=0.05)


@pytest.mark.parametrize("binarize", ["static", "threshold", "dynamic"])
def test_grey_mnist_through_torchvision(data_root: Path, binarize: str) -> None:
    if not (data_root / "MNIST" / "raw" / "train-images-idx3-ubyte").exists():
        pytest.skip("grey MNIST not found")
    ds = data.load_dataset(DataConfig(name="mnist", root=str(data_root), binarize=binarize))
    assert ds.train.shape == (50000, 784) and ds.test.shape == (10000, 784)
    assert set(torch.unique(ds.test).tolist()) == {0.0, 1.0}
    assert ds.dynamic == (binarize == "dynamic")
    if binarize == "dynamic":
        assert len(torch.unique(ds.train)) > 2


def test_npz_levels_reals_and_labels(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    path = tmp_path / "d.npz"
    train_y, test_y = rng.integers(0, 3, 50), rng.integers(0, 3, 10)
    np.savez(path, train=rng.integers(0, 4, (50, 6)), test=rng.integers(0, 4, (10, 6)),
             train_labels=train_y, test_labels=test_y)  # fmt: skip
    ds = data.load_dataset(DataConfig(name="npz", path=str(path), values="levels", levels=4))
    assert ds.classes == 3 and ds.values == "levels" and ds.image_shape is None
    assert torch.equal(ds.split_labels("valid"), torch.from_numpy(train_y[45:]))  # held out with train
    assert ds.bits_per_dim(6 * math.log(2), "test") == pytest.approx(1.0)
    with pytest.raises(UsageError, match=r"integers 0\.\.2"):
        data.load_dataset(DataConfig(name="npz", path=str(path), values="levels", levels=3))
    np.savez(path, train=rng.normal(size=(50, 6)), test=rng.normal(size=(10, 6)))
    ds = data.load_dataset(DataConfig(name="npz", path=str(path), values="real"))
    assert ds.bits_per_dim(1.0, "test") is None and ds.classes == 0  # real values have no bits
    np.savez(path, train=rng.normal(size=(50, 6)), test=rng.normal(size=(10, 6)), train_labels=train_y)
    # labels for some splits only, or labels that are not integers, are refused
    with pytest.raises(UsageError, match="labels must come for every split"):
        data.load_dataset(DataConfig(name="npz", path=str(path), values="real"))
    np.savez(path, train=rng.normal(size=(50, 6)), test=rng.normal(size=(10, 6)),
             train_labels=rng.random(50), test_labels=test_y)  # fmt: skip
    with pytest.raises(UsageError, match="must hold integers"):
        data.load_dataset(DataConfig(name="npz", path=str(path), values="real"))
    np.savez(path, train=np.full((50, 6), np.nan), test=rng.normal(size=(10, 6)))
    with pytest.raises(UsageError, match="NaN or infinite"):
        data.load_dataset(DataConfig(name="npz", path=str(path), values="real"))


def test_grey_mnist_as_levels_and_in_logit_space_with_labels(data_root: Path) -> None:
    if not (data_root / "MNIST" / "raw" / "train-images-idx3-ubyte").exists():
        pytest.skip("grey MNIST not found")
    levels = data.load_dataset(DataConfig(name="mnist", root=str(data_root), values="levels", levels=4))
    assert set(torch.unique(levels.test).tolist()) == {0.0, 1.0, 2.0, 3.0}
    assert levels.classes == 10 and levels.split_labels("test").shape == (10000,)
    assert set(torch.unique(levels.split_labels("train")).tolist()) == set(range(10))
    logit = data.load_dataset(DataConfig(name="mnist", root=str(data_root), values="logit"))
    # the same pixels: back from logit space, each value lies in its own 1/256 bin
    v = (torch.sigmoid(logit.test.double()) - data.LOGIT_ALPHA) / (1 - 2 * data.LOGIT_ALPHA)
    bins = (levels.test.double() + 0.5) / 4  # the centre of the quarter the pixel is in
    assert ((v - bins).abs() <= 0.125 + 1e-6).all()
    assert torch.equal(logit.split_labels("test"), levels.split_labels("test"))
    # bits/dim of the 8-bit pixels: a uniform density on [0, 1)^D is 8 bits per pixel
    y = logit.test[:100]
    uniform_nll_y = float(data.logit_log_det(y.double()).mean())  # -log p(y) when p(v) = 1
    sub = data.Dataset(y, y, y, (28, 28), values="logit")
    assert sub.bits_per_dim(uniform_nll_y, "test") == pytest.approx(8.0, abs=1e-4)


@pytest.mark.parametrize("damage", ["cut", "header", "member"])
def test_a_damaged_npz_is_one_line_naming_the_file(tmp_path: Path, damage: str) -> None:
    """A download cut short, a zip header followed by garbage, a member whose CRC fails."""
    good = tmp_path / "good.npz"
    np.savez(good, train=np.zeros((10, 4)), test=np.zeros((5, 4)))
    raw = good.read_bytes()
    bad = tmp_path / "bad.npz"
    bad.write_bytes({
        "cut": raw[: len(raw) // 2],
        "header": b"PK\x03\x04" + bytes(range(256)),
        "member": raw[:60] + bytes(20) + raw[80:],
    }[damage])  # fmt: skip
    with pytest.raises(UsageError, match=f"cannot read {bad} as .npz"):
        data.load_dataset(DataConfig(name="npz", path=str(bad)))


def test_two_moons_splits_labels_and_shape() -> None:
    ds = data.load_dataset(DataConfig(name="toy", size=2000, values="real"))
    assert ds.train.shape == (2000, 2) and ds.valid.shape == (400, 2) and ds.test.shape == (400, 2)
    assert ds.classes == 2 and ds.values == "real" and ds.image_shape is None
    x, y = ds.train.double(), ds.split_labels("train")
    # each moon is a half circle of radius 1 around its centre, blurred by noise of 0.1
    centres = torch.tensor([[0.0, 0.0], [1.0, 0.5]], dtype=torch.float64)
    radius = (x - centres[y]).norm(dim=1)
    assert abs(float(radius.mean()) - 1) < 0.01 and 0.08 < float(radius.std()) < 0.12
    upper = x[y == 0]
    assert float(upper[:, 1].mean()) == pytest.approx(2 / math.pi, abs=0.03)  # mean of sin over [0, pi]
    again = data.load_dataset(DataConfig(name="toy", size=2000, values="real"))
    assert torch.equal(again.train, ds.train)  # the set is a property of its config
    toy = DataConfig(name="toy")
    assert data.data_shape(toy) == data.DataShape(2, 2)
