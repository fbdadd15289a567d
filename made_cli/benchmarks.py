"""The MAF paper's tabular benchmarks (Papamakarios et al. 2017): POWER, GAS, HEPMASS, MINIBOONE
and BSDS300 from the authors' archive, preprocessed step by step as their published loaders do.

The archive (Zenodo record 1161203, data.tar.gz) is downloaded into <data root>/maf/ on first
use and only the set's own files are extracted from it. Nothing is unpickled: GAS, a pickled
pandas DataFrame, is refused until the archive's checksum is recorded here (see README).
"""

from __future__ import annotations

import shutil
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np

from .download import download
from .errors import UsageError

__all__ = ["ARCHIVE_URL", "BENCHMARK_FEATURES", "benchmark_files", "load_benchmark"]

ARCHIVE_URL = "https://zenodo.org/records/1161203/files/data.tar.gz?download=1"
BENCHMARK_FEATURES = {"power": 6, "gas": 8, "hepmass": 21, "miniboone": 43, "bsds300": 63}
_FILES = {  # inside the archive's data/ folder
    "power": ("power/data.npy",),
    "gas": ("gas/ethylene_CO.pickle",),
    "hepmass": ("hepmass/1000_train.csv", "hepmass/1000_test.csv"),
    "miniboone": ("miniboone/data.npy",),
    "bsds300": ("BSDS300/BSDS300.hdf5",),
}

Splits = tuple[np.ndarray, np.ndarray, np.ndarray]


def benchmark_files(name: str, root: Path) -> list[Path]:
    """Where a set's files are read from: <root>/maf/data/<the archive's paths>."""
    return [root / "maf" / "data" / f for f in _FILES[name]]


def load_benchmark(name: str, root: Path) -> Splits:
    """(train, valid, test) float32 arrays of a benchmark, downloading the archive if needed."""
    if name == "gas":
        raise UsageError(
            "gas is a pickled pandas DataFrame in the MAF archive, and made unpickles nothing it cannot "
            "check against a recorded checksum; none is recorded for the archive yet (see README)"
        )
    files = benchmark_files(name, root)
    if not all(f.is_file() for f in files):
        _fetch(name, root, files)
    loader = {"power": _power, "hepmass": _hepmass, "miniboone": _miniboone, "bsds300": _bsds300}[name]
    return tuple(s.astype(np.float32) for s in loader(files))  # type: ignore[return-value]


def _fetch(name: str, root: Path, files: list[Path]) -> None:
    """Download the archive into <root>/maf/ (once) and extract this set's files from it."""
    archive = root / "maf" / "data.tar.gz"
    try:
        if not archive.is_file():
            download(ARCHIVE_URL, archive)
        wanted = {f"data/{f}" for f in _FILES[name]}
        with tarfile.open(archive) as tar:
            for member in tar:
                if member.name in wanted and member.isfile():  # plain files at known paths only
                    target = root / "maf" / member.name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    source = tar.extractfile(member)
                    assert source is not None
                    with source, target.open("wb") as out:
                        shutil.copyfileobj(source, out)
    except (OSError, tarfile.TarError) as e:
        raise UsageError(
            f"{name} is not under {root / 'maf' / 'data'} and the MAF archive could not be fetched into "
            f"{root / 'maf'} ({e}); put the archive's data/ folder there or set MADE_DATA_DIR"
        ) from None
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise UsageError(f"the MAF archive {archive} holds no {', '.join(missing)}")


def _split_from_end(data: np.ndarray) -> Splits:
    """test = the last tenth, valid = the last tenth of the rest, train = what is left."""
    n_test = int(0.1 * data.shape[0])
    test, rest = data[-n_test:], data[:-n_test]
    n_valid = int(0.1 * rest.shape[0])
    return rest[:-n_valid], rest[-n_valid:], test


def _standardise(splits: Splits, reference: np.ndarray, ddof: int) -> Splits:
    mean, std = reference.mean(0), reference.std(0, ddof=ddof)
    return tuple((s - mean) / std for s in splits)  # type: ignore[return-value]


def _npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False).astype(np.float64)
    except (OSError, ValueError) as e:
        raise UsageError(f"cannot read {path} as .npy: {e}") from None


def _power(files: list[Path]) -> Splits:
    """Shuffle (RandomState(42)), drop global intensity (column 3) and reactive power (1), add
    uniform noise drawn in the authors' order, split from the end, standardise with train+valid."""
    rng = np.random.RandomState(42)  # the legacy generator: the authors' exact draws
    data = _npy(files[0])
    rng.shuffle(data)
    n = data.shape[0]
    data = np.delete(data, 3, axis=1)
    data = np.delete(data, 1, axis=1)
    voltage = 0.01 * rng.rand(n, 1)
    active = 0.001 * rng.rand(n, 1)
    sub_metering = rng.rand(n, 3)
    data = data + np.hstack((active, voltage, sub_metering, np.zeros((n, 1))))
    train, valid, test = _split_from_end(data)
    return _standardise((train, valid, test), np.vstack((train, valid)), ddof=0)


def _csv(path: Path) -> np.ndarray:
    from .tables import read_table

    table = read_table(path)
    return np.stack(
        [table.column(i).to_numpy(zero_copy_only=False) for i in range(table.num_columns)], 1
    ).astype(np.float64)


def _hepmass(files: list[Path]) -> Splits:
    """Signal rows (label 1) of both files without the label; the test file's last column dropped;
    standardised with train (ddof 1); columns whose smallest value occurs over 5 times dropped;
    validation = the last tenth of train."""
    train, test = _csv(files[0]), _csv(files[1])
    train = train[train[:, 0] == 1][:, 1:]
    test = test[test[:, 0] == 1][:, 1:-1]
    mean, std = train.mean(0), train.std(0, ddof=1)
    train, test = (train - mean) / std, (test - mean) / std
    discrete = [i for i, column in enumerate(train.T) if sorted(Counter(column).items())[0][1] > 5]
    train, test = np.delete(train, discrete, axis=1), np.delete(test, discrete, axis=1)
    n_valid = int(0.1 * train.shape[0])
    return train[:-n_valid], train[-n_valid:], test


def _miniboone(files: list[Path]) -> Splits:
    """Split from the end; standardise with train+valid (ddof 0)."""
    train, valid, test = _split_from_end(_npy(files[0]))
    return _standardise((train, valid, test), np.vstack((train, valid)), ddof=0)


def _bsds300(files: list[Path]) -> Splits:
    """The HDF5's own train, validation and test arrays, as stored."""
    import h5py

    try:
        with h5py.File(files[0], "r") as f:
            return np.asarray(f["train"]), np.asarray(f["validation"]), np.asarray(f["test"])
    except (OSError, KeyError) as e:
        raise UsageError(
            f"cannot read {files[0]} as the BSDS300 HDF5 (train, validation, test): {e}"
        ) from None
