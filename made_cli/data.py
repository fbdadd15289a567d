"""Datasets as compact tensors: binarized MNIST (.amat), torchvision's MNIST family, .npz, tables,
synthetic and toy sets."""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .benchmarks import BENCHMARK_FEATURES, load_benchmark
from .condition import Condition
from .config import DataConfig
from .download import download
from .errors import UsageError
from .heads import ColumnLaw
from .tables import SPLIT_NAMES, TableSchema, infer_schema, read_table, split_rows
from .toys import TOY_CLASSES, toy_rows

__all__ = [
    "BINARIZED_MNIST_URL",
    "LOGIT_ALPHA",
    "DataShape",
    "Dataset",
    "data_root",
    "data_shape",
    "display_values",
    "load_dataset",
    "logit_log_det",
    "read_amat",
    "read_npz",
    "synthetic_distribution",
    "synthetic_entropy",
    "synthetic_log_prob",
    "table_record",
]

BINARIZED_MNIST_URL = (
    "http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/binarized_mnist_{split}.amat"
)
MNIST_PIXELS = 784
_DATA_SEED = 0  # static binarization and synthetic data are properties of the data, not the run
LOGIT_ALPHA = 1e-6  # logit space: y = logit(a + (1 - 2a) v), kept off 0 and 1 (MAF's choice for MNIST)
_SYNTHETIC_COMPONENTS = 4


@dataclass(frozen=True)
class Dataset:
    """Three splits as float32 (N, D) tensors, the image shape if any, labels if the data has them.

    ``values`` says what the numbers are (config ``data.values``): 0/1, integer levels, or reals
    (``logit``: dequantised grey pixels in logit space). With ``dynamic`` the training rows hold
    grey levels in [0, 1] and each batch is binarized afresh (validation and test stay fixed).
    """

    train: torch.Tensor
    valid: torch.Tensor
    test: torch.Tensor
    image_shape: tuple[int, int] | None
    dynamic: bool = False
    labels: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None  # (N,) int64 per split
    classes: int = 0
    values: str = "binary"
    root: str | None = None  # the data root it was read from, for the sources that have one
    # a table's: per column its categories (0: real), continuous context per split, the schema
    # that encoded it, and each file row's split (0 train, 1 valid, 2 test)
    columns: tuple[ColumnLaw, ...] | None = None
    context: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
    table_schema: TableSchema | None = None
    split_codes: np.ndarray | None = None
    sha256: str | None = None

    @property
    def features(self) -> int:
        return self.train.shape[1]

    def split(self, name: str) -> torch.Tensor:
        if name not in ("train", "valid", "test"):
            raise UsageError(f"unknown split {name!r}: use train, valid or test")
        data = getattr(self, name)
        if name == "train" and self.dynamic:
            return torch.bernoulli(data, generator=torch.Generator().manual_seed(_DATA_SEED))
        return data

    def split_labels(self, name: str) -> torch.Tensor | None:
        if self.labels is None:
            return None
        return self.labels[SPLIT_NAMES.index(name)]

    def split_context(self, name: str) -> torch.Tensor | None:
        """A table's context columns (N, C) on a split; None without context columns."""
        if self.context is None:
            return None
        return self.context[SPLIT_NAMES.index(name)]

    def split_condition(self, name: str) -> Condition:
        """A split's labels and context columns, as a model is given them."""
        return Condition(self.split_labels(name), self.split_context(name))

    @property
    def context_features(self) -> int:
        return 0 if self.context is None else self.context[0].shape[1]

    @property
    def column_levels(self) -> tuple[int, ...] | None:
        """A table's: per column its categories, 0 for a real one."""
        return None if self.columns is None else tuple(law.levels for law in self.columns)

    def bits_per_dim(self, nll_nats: float, split: str) -> float | None:
        """Bits per dimension of the data as stored, from an NLL in the model's space.

        Discrete values: the NLL itself. ``logit``: the density is carried back to the 8-bit
        pixels through the logit map's Jacobian and the 1/256 dequantisation bins (as in the
        MAF paper). Plain reals: no such unit exists, so None.
        """
        d = self.features
        if self.values == "mixed" and self.column_levels is not None and all(self.column_levels):
            return nll_nats / (d * math.log(2))  # a table of discrete columns only
        if self.values in ("real", "mixed"):
            return None
        if self.values == "logit":
            nll_nats = nll_nats - float(logit_log_det(self.split(split)).mean()) + d * math.log(256)
        return nll_nats / (d * math.log(2))


DEFAULT_ROOT = "~/.cache/made"
_FOLDERS = {
    "binarized_mnist": "binarized_mnist", "mnist": "MNIST", "fashion_mnist": "FashionMNIST",
    **dict.fromkeys(BENCHMARK_FEATURES, "maf"),
}  # fmt: skip


def data_root(cfg: DataConfig, recorded: str | None = None) -> Path | None:
    """Where a dataset that lives under a data root is read from (None for the others).

    For a new run: the config's data.root, else $MADE_DATA_DIR, else ~/.cache/made. For a
    trained run, ``recorded`` is the root it read (its data.root, if it had one, resolved), so
    its later commands need neither: $MADE_DATA_DIR, where the data now is, else ``recorded``.
    A recorded root that no longer holds the data is refused, naming both places, rather than
    downloaded into again.
    """
    if cfg.name not in _FOLDERS:
        return None
    env = os.environ.get("MADE_DATA_DIR")
    chosen = (cfg.root or env) if recorded is None else env
    if chosen:
        return Path(chosen).expanduser().resolve()
    if recorded is not None:
        folder = Path(recorded) / _FOLDERS[cfg.name]
        if not folder.is_dir():
            raise UsageError(
                f"this run was trained on {cfg.name} from {recorded}, which no longer holds it "
                f"(no {folder}); set MADE_DATA_DIR to where the data is now, or to {DEFAULT_ROOT} "
                "to download it again"
            )
        return Path(recorded)
    return Path(DEFAULT_ROOT).expanduser().resolve()


def load_dataset(
    cfg: DataConfig, recorded_root: str | None = None, recorded_table: dict[str, Any] | None = None
) -> Dataset:
    """Load (downloading if needed) the dataset a config names; ``recorded_root``: see ``data_root``.

    ``recorded_table``: a trained run's table schema and split (``Dataset.table_record``), applied
    to the file as they are instead of decided afresh.
    """
    root = data_root(cfg, recorded_root)
    if cfg.name == "binarized_mnist":
        assert root is not None
        return dataclasses.replace(_binarized_mnist(root), root=str(root))
    if cfg.name in ("mnist", "fashion_mnist"):
        assert root is not None
        return dataclasses.replace(_torchvision(cfg.name, root, cfg), root=str(root))
    if cfg.name == "npz":
        assert cfg.path is not None  # checked by the config
        return _npz(Path(cfg.path).expanduser(), cfg)
    if cfg.name in BENCHMARK_FEATURES:
        assert root is not None
        train, valid, test = load_benchmark(cfg.name, root)
        return Dataset(*(torch.from_numpy(s) for s in (train, valid, test)), image_shape=None, values="real",
                       root=str(root))  # fmt: skip
    if cfg.name == "table":
        assert cfg.path is not None  # checked by the config
        return _table(Path(cfg.path).expanduser(), cfg, recorded_table)
    if cfg.name == "synthetic":
        return _synthetic(cfg.features, cfg.size)
    if cfg.name == "toy":
        return _toy(cfg.shape, cfg.size, cfg.seed)
    raise UsageError(f"unknown dataset {cfg.name!r}")


@dataclass(frozen=True)
class DataShape:
    """What a model is built for besides its config (``kinds.build_model``'s arguments)."""

    features: int
    classes: int = 0  # label classes; 0: no labels
    columns: tuple[ColumnLaw, ...] | None = None  # a table's: per column its law
    context: int = 0  # a table's context columns

    @property
    def column_levels(self) -> tuple[int, ...] | None:
        """A table's: per column its categories, 0 for a real one."""
        return None if self.columns is None else tuple(law.levels for law in self.columns)


def data_shape(cfg: DataConfig) -> DataShape:
    """The shape of a dataset, without loading it when the name alone says."""
    if cfg.name in ("binarized_mnist", "mnist", "fashion_mnist"):
        return DataShape(MNIST_PIXELS, 0 if cfg.name == "binarized_mnist" else 10)
    if cfg.name == "synthetic":
        return DataShape(cfg.features, _SYNTHETIC_COMPONENTS)
    if cfg.name == "toy":
        return DataShape(2, TOY_CLASSES[cfg.shape])
    if cfg.name in BENCHMARK_FEATURES:
        return DataShape(BENCHMARK_FEATURES[cfg.name])
    d = load_dataset(cfg)
    return DataShape(d.features, d.classes, d.columns, d.context_features)


def display_values(x: torch.Tensor, cfg: DataConfig) -> torch.Tensor:
    """Data as stored (any values) -> grey levels in [0, 1] for pictures."""
    if cfg.values == "levels":
        return x / (cfg.levels - 1)
    if cfg.values == "logit":
        return ((torch.sigmoid(x) - LOGIT_ALPHA) / (1 - 2 * LOGIT_ALPHA)).clamp(0, 1)
    if cfg.values == "real":  # no natural range: stretch the batch's own
        low, high = x.min(), x.max()
        return (x - low) / (high - low).clamp_min(1e-12)
    return x


def logit_log_det(y: torch.Tensor) -> torch.Tensor:
    """log |dy/dv| (B,) of y = logit(a + (1 - 2a) v), summed over dimensions, computed from y."""
    per = math.log(1 - 2 * LOGIT_ALPHA) + F.softplus(y) + F.softplus(-y)
    return per.sum(-1)


# -- binarized MNIST (Larochelle & Murray 2011) -----------------------------------------------
def read_amat(path: Path, features: int = MNIST_PIXELS) -> torch.Tensor:
    """Parse a Larochelle .amat file (rows of '0'/'1' separated by spaces) fast, with checks."""
    raw = np.fromfile(path, dtype=np.uint8)
    is_bit = (raw == ord("0")) | (raw == ord("1"))
    is_space = (raw == ord(" ")) | (raw == ord("\n")) | (raw == ord("\r"))
    if not np.all(is_bit | is_space):
        raise UsageError(f"corrupt .amat file {path}: characters other than 0, 1 and spaces")
    bits = raw[is_bit] - ord("0")
    rows = int(np.count_nonzero(raw == ord("\n"))) + (1 if raw.size and raw[-1] != ord("\n") else 0)
    if rows == 0 or bits.size != rows * features:
        raise UsageError(
            f"corrupt .amat file {path}: {bits.size} values on {rows} lines, expected {features} per line"
        )
    return torch.from_numpy(bits.reshape(rows, features).astype(np.float32))


def _binarized_mnist(root: Path) -> Dataset:
    folder = root / "binarized_mnist"
    splits = {}
    for split in ("train", "valid", "test"):
        path = folder / f"binarized_mnist_{split}.amat"
        if not path.exists():
            url = BINARIZED_MNIST_URL.format(split=split)
            try:
                download(url, path)
            except OSError as e:
                raise UsageError(
                    f"binarized MNIST is not in {folder} and could not be downloaded ({e}); "
                    f"put binarized_mnist_{{train,valid,test}}.amat there or set MADE_DATA_DIR"
                ) from None
        splits[split] = read_amat(path)
    return Dataset(**splits, image_shape=(28, 28))


# -- grey MNIST and Fashion-MNIST through torchvision -----------------------------------------
def _torchvision(name: str, root: Path, cfg: DataConfig) -> Dataset:
    import torchvision

    cls = torchvision.datasets.MNIST if name == "mnist" else torchvision.datasets.FashionMNIST
    try:
        train = cls(str(root), train=True, download=True)
        test = cls(str(root), train=False, download=True)
    except (RuntimeError, OSError, ValueError) as e:
        raise UsageError(
            f"{name} could not be read or downloaded under {root / cls.__name__ / 'raw'} ({e}); "
            "put the IDX files there or set MADE_DATA_DIR"
        ) from None
    pixels = [t.reshape(t.shape[0], -1) for t in (train.data[:50000], train.data[50000:], test.data)]
    labels = (train.targets[:50000].long(), train.targets[50000:].long(), test.targets.long())
    shape = {"image_shape": (28, 28), "labels": labels, "classes": 10, "values": cfg.values}
    generator = torch.Generator().manual_seed(_DATA_SEED)
    if cfg.values == "levels":  # 256 grey levels into L equal bins
        return Dataset(*[(p.long() * cfg.levels // 256).float() for p in pixels], **shape)
    if cfg.values == "logit":  # dequantised once, with fixed noise, then mapped to logit space
        v = [(p.float() + torch.rand(p.shape, generator=generator)) / 256 for p in pixels]
        return Dataset(*[torch.logit(LOGIT_ALPHA + (1 - 2 * LOGIT_ALPHA) * x) for x in v], **shape)
    grey = [p.float() / 255.0 for p in pixels]
    if cfg.binarize == "threshold":
        return Dataset(*[(g > 0.5).float() for g in grey], **shape)
    fixed = [torch.bernoulli(g, generator=generator) for g in grey]
    if cfg.binarize == "static":
        return Dataset(*fixed, **shape)
    return Dataset(grey[0], fixed[1], fixed[2], dynamic=True, **shape)


def _square_shape(features: int) -> tuple[int, int] | None:
    """Square images are shown as pictures; anything else is kept as raw arrays only."""
    side = math.isqrt(features)
    return (side, side) if side * side == features and features >= 16 else None


# -- user data -------------------------------------------------------------------------------
def read_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of an .npz, read without unpickling; a usage error for a missing, damaged or
    pickle-holding file."""
    if not path.is_file():
        raise UsageError(f"data file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: np.asarray(f[k]) for k in f.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:  # cut short, damaged
        why = "not a valid .npz file" if "allow_pickle" in str(e) else str(e)
        raise UsageError(f"cannot read {path} as .npz: {why}") from None


def _npz(path: Path, cfg: DataConfig) -> Dataset:
    """User data: arrays train, test, optional valid, and optional <split>_labels (integers)."""
    arrays = read_npz(path)
    for key in ("train", "test"):
        if key not in arrays:
            raise UsageError(f"{path} has no array '{key}' (it needs train, test and optionally valid)")
    classes = _label_classes(path, arrays)
    with_labels = classes > 0
    if "valid" not in arrays:  # hold out the last tenth of train (and of its labels)
        n = arrays["train"].shape[0] if arrays["train"].ndim else 0
        cut = n - max(1, n // 10)
        for suffix in ("", "_labels") if with_labels else ("",):
            whole = arrays[f"train{suffix}"]
            arrays[f"valid{suffix}"], arrays[f"train{suffix}"] = whole[cut:], whole[:cut]
    splits = {key: torch.from_numpy(_check_values(path, key, arrays[key], cfg)) for key in SPLIT_NAMES}
    dims = {t.shape[1] for t in splits.values()}
    if len(dims) != 1:
        raise UsageError(f"{path}: train, valid and test have different widths {sorted(dims)}")
    labels = _npz_labels(arrays) if with_labels else None
    return Dataset(
        **splits, image_shape=_square_shape(dims.pop()), labels=labels, classes=classes, values=cfg.values
    )


def _table(path: Path, cfg: DataConfig, recorded: dict[str, Any] | None) -> Dataset:
    """A table (see tables.py): its schema and split decided here for a new run, or the run's own."""
    schema = None if recorded is None else TableSchema.from_dict(recorded["schema"])
    table = read_table(path, () if schema is None else schema.text_columns)
    digest = file_digest(path)
    if schema is None:
        codes = split_rows(table, cfg, path)
        schema = infer_schema(table, cfg, path, train=codes == 0)
    else:
        if recorded.get("sha256") not in (None, digest):
            raise UsageError(
                f"{path} has changed since the run was trained on it (its SHA-256 differs), so the "
                "run's split would pick other rows; score new rows with: made score RUN FILE"
            )
        codes = np.asarray(torch.as_tensor(recorded["split"]).numpy(), dtype=np.uint8)
    rows = schema.encode(table, path)
    gaps = _rows_with_gaps(rows)
    if gaps.any():
        codes = _missing_cells(path, schema, rows, gaps, codes, cfg.missing if recorded is None else "model")
    parts = [torch.from_numpy(codes == i) for i in range(len(SPLIT_NAMES))]

    def per_split(t: torch.Tensor | None) -> Any:
        return None if t is None else tuple(t[part] for part in parts)

    classes = schema.label.levels if schema.label is not None else 0
    return Dataset(
        *per_split(rows.x), image_shape=None, labels=per_split(rows.labels), classes=classes,
        values="mixed", columns=schema.laws, context=per_split(rows.context),
        table_schema=schema, split_codes=codes, sha256=digest,
    )  # fmt: skip


DROPPED = len(SPLIT_NAMES)  # a row's split code when data.missing: drop left it out


def _rows_with_gaps(rows: Any) -> np.ndarray:
    """(N,) bool: rows with a missing cell in a modelled, label or context column."""
    gaps = torch.isnan(rows.x).any(1)
    if rows.labels is not None:
        gaps |= rows.labels < 0
    if rows.context is not None:
        gaps |= torch.isnan(rows.context).any(1)
    return gaps.numpy()


def _missing_cells(
    path: Path, schema: TableSchema, rows: Any, gaps: np.ndarray, codes: np.ndarray, mode: str
) -> np.ndarray:
    """Apply data.missing to rows with missing cells: refuse the file, drop the rows (their split
    code becomes ``DROPPED``), or keep them (model: only a label's or context column's gap, which
    no model can train on, is refused). Returns the split codes."""
    first = int(np.flatnonzero(gaps)[0])
    names = [*schema.names, *schema.context]
    cells = torch.isnan(rows.x[first]).tolist()
    if rows.context is not None:
        cells += torch.isnan(rows.context[first]).tolist()
    column = names[cells.index(True)] if True in cells else schema.label.name if schema.label else "?"
    where = f"{path}: column {column!r}, row {first + 1}: the value is missing (empty, NA or NaN)"
    if mode == "refuse":
        raise UsageError(f"{where}; with data.missing: model the rows train on their observed cells, "
                         "data.missing: drop leaves them out")  # fmt: skip
    if mode == "drop":
        codes = codes.copy()
        codes[gaps] = DROPPED
        for i, name in enumerate(SPLIT_NAMES):
            if not (codes == i).any():
                raise UsageError(f"{path}: every {name} row has a missing cell (data.missing: drop)")
        return codes
    kept = torch.from_numpy(codes != DROPPED)  # a run's rows that data.missing: drop left out aside
    label_gaps = None if rows.labels is None else (rows.labels < 0) & kept
    context_gaps = None if rows.context is None else torch.isnan(rows.context).any(1) & kept
    label_gap = label_gaps is not None and bool(label_gaps.any())
    context_gap = context_gaps is not None and bool(context_gaps.any())
    if label_gap or context_gap:
        what = "label" if label_gap else "context"
        gaps_of = label_gaps if label_gap else context_gaps
        assert gaps_of is not None
        first = int(np.flatnonzero(gaps_of.numpy())[0])
        name = (
            schema.label.name
            if label_gap and schema.label
            else next(n for j, n in enumerate(schema.context) if torch.isnan(rows.context[first, j]))
        )
        raise UsageError(
            f"{path}: {what} column {name!r}, row {first + 1}: the value is missing; a model is given "
            "its label and context, so set data.missing: drop to leave such rows out"
        )
    return codes


def file_digest(path: Path) -> str:
    """The SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def table_record(dataset: Dataset) -> dict[str, Any] | None:
    """What a checkpoint keeps of a table (plain data and one tensor): its schema, its split and
    the file's SHA-256 (a changed file is refused rather than split anew)."""
    if dataset.table_schema is None or dataset.split_codes is None:
        return None
    return {
        "schema": dataset.table_schema.to_dict(),
        "split": torch.from_numpy(dataset.split_codes.copy()),
        "sha256": dataset.sha256,
    }


def _check_values(path: Path, key: str, a: np.ndarray, cfg: DataConfig) -> np.ndarray:
    """One split as float32 (N, D), refused unless its values are what data.values says."""
    if a.ndim != 2 or a.shape[0] == 0 or a.shape[1] == 0:
        raise UsageError(f"{path}: '{key}' must be a non-empty (N, D) array, got shape {a.shape}")
    if not np.issubdtype(a.dtype, np.number) and a.dtype != bool:
        raise UsageError(f"{path}: '{key}' must be numeric, got {a.dtype}")
    if cfg.values == "binary" and not np.isin(a, (0, 1)).all():
        raise UsageError(
            f"{path}: '{key}' holds values other than 0 and 1; a Bernoulli MADE needs binary data "
            "(set data.values: levels or real, with a categorical or Gaussian head)"
        )
    if cfg.values == "levels" and not np.isin(a, np.arange(cfg.levels)).all():
        raise UsageError(
            f"{path}: '{key}' holds values other than the integers 0..{cfg.levels - 1} (data.levels)"
        )
    if cfg.values == "real" and not np.isfinite(a).all():
        raise UsageError(f"{path}: '{key}' holds NaN or infinite values")
    return a.astype(np.float32)


def _label_classes(path: Path, arrays: dict[str, np.ndarray]) -> int:
    """How many label classes the file has (0: no labels); a partial or malformed set of label
    arrays is refused before any split."""
    given = {k for k in arrays if k.endswith("_labels")}
    if not given:
        return 0
    wanted = {f"{k}_labels" for k in SPLIT_NAMES if k in arrays}
    if given != wanted:
        raise UsageError(
            f"{path}: labels must come for every split it has ({', '.join(sorted(wanted))}), "
            f"got {', '.join(sorted(given))}"
        )
    for name in sorted(given):
        y, rows = arrays[name], arrays[name.removesuffix("_labels")]
        if y.ndim != 1 or rows.ndim < 1 or y.shape[0] != rows.shape[0]:
            n = rows.shape[0] if rows.ndim else 0
            raise UsageError(f"{path}: '{name}' must be a ({n},) array of labels")
        if not np.issubdtype(y.dtype, np.integer) or (y.size and y.min() < 0):
            raise UsageError(f"{path}: '{name}' must hold integers >= 0")
    classes = 1 + max((int(arrays[name].max()) for name in given if arrays[name].size), default=-1)
    if classes > arrays["train"].shape[0]:
        raise UsageError(f"{path}: labels must be class indices 0..C-1 (the largest is {classes - 1})")
    return max(classes, 1)  # label arrays present, all empty: refused later as empty splits


def _npz_labels(arrays: dict[str, np.ndarray]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The checked labels of each split as int64 (``_label_classes`` vetted them)."""
    out = [torch.from_numpy(arrays[f"{key}_labels"].astype(np.int64)) for key in SPLIT_NAMES]
    return out[0], out[1], out[2]


# -- synthetic data with an exactly known distribution ------------------------------------------
def synthetic_distribution(
    features: int, components: int = _SYNTHETIC_COMPONENTS
) -> tuple[torch.Tensor, torch.Tensor]:
    """The synthetic set's law, a mixture of products: (weights (C,), probabilities (C, D))."""
    g = torch.Generator().manual_seed(_DATA_SEED)
    weights = torch.softmax(torch.randn(components, generator=g, dtype=torch.float64), 0)
    probs = torch.sigmoid(3.0 * torch.randn(components, features, generator=g, dtype=torch.float64))
    return weights, probs


def synthetic_log_prob(x: torch.Tensor, weights: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """Exact log p(x) (B,) under the mixture of products."""
    x = x.to(probs.dtype)
    per = x[:, None, :] * probs.log() + (1 - x[:, None, :]) * (1 - probs).log()  # (B, C, D)
    return torch.logsumexp(per.sum(-1) + weights.log(), dim=1)


def _synthetic(features: int, size: int) -> Dataset:
    """Rows of the mixture of products; each row's label is the component that drew it."""
    weights, probs = synthetic_distribution(features)
    g = torch.Generator().manual_seed(_DATA_SEED + 1)
    n = size + 2 * max(1, size // 5)
    comp = torch.multinomial(weights, n, replacement=True, generator=g)
    x = torch.bernoulli(probs[comp], generator=g).float()
    v = max(1, size // 5)
    cuts = (slice(0, size), slice(size, size + v), slice(size + v, None))
    labels = (comp[cuts[0]], comp[cuts[1]], comp[cuts[2]])
    return Dataset(
        *(x[c] for c in cuts), image_shape=_square_shape(features), labels=labels,
        classes=_SYNTHETIC_COMPONENTS,
    )  # fmt: skip


def synthetic_entropy(features: int) -> float:
    """Exact entropy in nats of the synthetic law, by enumerating all 2^D inputs (D <= 20)."""
    if features > 20:
        raise ValueError("the exact entropy is computed for at most 20 features")
    weights, probs = synthetic_distribution(features)
    bits = (torch.arange(2**features)[:, None] >> torch.arange(features)) & 1
    logp = synthetic_log_prob(bits.double(), weights, probs)
    return float(-(logp.exp() * logp).sum())


# -- built-in 2-D densities, for quick runs and pictures ------------------------------------------
def _toy(shape: str, size: int, seed: int) -> Dataset:
    """A built-in 2-D density (toys.py): ``size`` training rows, a fifth as many for validation
    and test, drawn with ``seed`` (data.seed)."""
    v = max(1, size // 5)
    x, labels = toy_rows(shape, size + 2 * v, torch.Generator().manual_seed(seed))
    cuts = (slice(0, size), slice(size, size + v), slice(size + v, None))
    split_labels = None if labels is None else (labels[cuts[0]], labels[cuts[1]], labels[cuts[2]])
    return Dataset(
        *(x[c] for c in cuts), image_shape=None, labels=split_labels, classes=TOY_CLASSES[shape],
        values="real",
    )  # fmt: skip
