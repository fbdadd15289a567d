"""Typed, frozen configuration: YAML (safe_load) <-> dataclasses, dotted overrides, clear errors."""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import re
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import yaml

from .errors import BadArgument, UsageError

__all__ = [
    "Config",
    "DataConfig",
    "FlowConfig",
    "IAFConfig",
    "ModelConfig",
    "TrainConfig",
    "check_seed",
    "config_from_dict",
    "config_keys",
    "config_to_dict",
    "config_to_yaml",
    "load_config",
]

# The spellings a config may use; degrees.py and heads.py take them from here, so reading a config
# needs no torch.
Ordering = Literal["natural", "reverse", "random"]
HiddenDegrees = Literal["random", "even"]  # random as in the paper; even: spread evenly
HeadName = Literal["bernoulli", "gaussian", "mog", "categorical", "auto"]
DatasetName = Literal[
    "binarized_mnist", "mnist", "fashion_mnist", "npz", "synthetic", "toy", "table",
    "power", "gas", "hepmass", "miniboone", "bsds300",
]  # fmt: skip
ToyShape = Literal["moons", "circles", "eight_gaussians", "checkerboard", "pinwheel", "spirals"]
ModelKindName = Literal["made", "iaf_vae", "maf"]
Binarize = Literal["dynamic", "static", "threshold"]
Values = Literal["binary", "levels", "logit", "real", "mixed"]  # mixed: a table's, column by column
# What each head models, and which datasets can give it (the rest is a config error). On a table,
# model.head names the law of its real columns (auto: a mixture of model.components Gaussians);
# its discrete columns are always categorical over their own categories.
_HEAD_VALUES = {"bernoulli": ("binary",), "categorical": ("levels",), "gaussian": ("logit", "real", "mixed"),
                "mog": ("logit", "real", "mixed"), "auto": ("mixed",)}  # fmt: skip
_DATASET_VALUES = {
    "binarized_mnist": ("binary",),
    "mnist": ("binary", "levels", "logit"),
    "fashion_mnist": ("binary", "levels", "logit"),
    "npz": ("binary", "levels", "real"),
    "synthetic": ("binary",),
    "toy": ("real",),
    "table": ("mixed",),
    **dict.fromkeys(("power", "gas", "hepmass", "miniboone", "bsds300"), ("real",)),  # the MAF benchmarks
}


@dataclass(frozen=True)
class DataConfig:
    name: DatasetName = "binarized_mnist"
    root: str | None = None  # else $MADE_DATA_DIR, else ~/.cache/made
    path: str | None = None  # npz, table: the file (.npz; .csv, .tsv or .parquet)
    binarize: Binarize = "static"  # mnist, fashion_mnist with values binary: how grey becomes bits
    # binary: 0/1; levels: integers 0..levels-1 (grey quantised); logit: grey dequantised and
    # mapped to logit space (real); real: an npz's values as they are
    values: Values = "binary"
    levels: int = 4  # values: levels only
    features: int = 12  # synthetic only: dimensions
    size: int = 5000  # synthetic, toy: training rows (validation and test get a fifth each)
    shape: ToyShape = "moons"  # toy: moons | circles | eight_gaussians | checkerboard | pinwheel | spirals
    # table only: the modelled columns (default: every column with no role below that can be
    # modelled, see tables.infer_schema), the label column (classes for condition_on: label),
    # continuous context columns (the model is p(x | c)), a column of train/valid/test per row
    # (default: a seeded 80/10/10 split), and the most distinct values a text column may have
    # to be modelled (a categorical)
    columns: tuple[str, ...] = ()
    label_column: str | None = None
    context_columns: tuple[str, ...] = ()
    split_column: str | None = None
    exclude: tuple[str, ...] = ()  # columns not to model (when data.columns does not name them)
    # rows with missing cells: model (train on the observed cells), drop, or refuse the file
    missing: Literal["model", "drop", "refuse"] = "model"
    max_levels: int = 256
    seed: int = 0  # table: seeds the 80/10/10 split when there is no split column; toy: its rows


@dataclass(frozen=True)
class ModelConfig:
    kind: ModelKindName = "made"  # iaf_vae, maf: the keys below describe each step's or layer's MADE
    hidden: tuple[int, ...] = (500,)
    ordering: Ordering = "natural"
    hidden_degrees: HiddenDegrees = "random"
    num_masks: int = 1
    direct: bool = True  # direct input-output connections
    # bernoulli | categorical | gaussian | mog (mixture of Gaussians); a table: auto, gaussian or mog
    head: HeadName = "bernoulli"
    components: int = 5  # head: mog, or a flow's base: mog
    condition_on: Literal["none", "label"] = "none"  # label: class-conditional, labels at degree 0


@dataclass(frozen=True)
class IAFConfig:
    """The VAE around the MADEs when model.kind is iaf_vae (Kingma et al. 2016)."""

    latent: int = 32  # dimensions of z
    encoder: tuple[int, ...] = (500, 500)  # hidden layers of the encoder MLP
    decoder: tuple[int, ...] = (500, 500)  # hidden layers of the decoder MLP
    context: int = 64  # size of the encoder's context h, fed to every step at degree 0
    steps: int = 2  # IAF steps; 0 is the diagonal-Gaussian VAE
    warmup_epochs: int = 10  # the KL weight rises linearly from 0 to 1 over these epochs
    free_bits: float = 0.0  # nats per latent dimension the batch-mean KL may use for free
    importance_samples: int = 1000  # K of `made evaluate`'s importance-weighted log p(x)


@dataclass(frozen=True)
class FlowConfig:
    """The flow around the MADEs when model.kind is maf (Papamakarios et al. 2017)."""

    layers: int = 5  # MADE layers, each with Gaussian conditionals
    ordering: Literal["reverse", "random", "same"] = "reverse"  # each layer's against the previous
    batch_norm: bool = True  # after each layer; evaluation uses saved running statistics
    base: Literal["normal", "mog"] = "normal"  # mog: a MADE with model.components Gaussians


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 100
    batch_size: int = 100
    lr: float = 1.0e-3
    weight_decay: float = 0.0
    patience: int = 30  # epochs without a better validation NLL before stopping
    eval_batch_size: int = 1000
    tensorboard: bool = False  # also write metrics.jsonl's numbers as TensorBoard scalars in RUN/tensorboard


@dataclass(frozen=True)
class Config:
    name: str = "made"
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    iaf: IAFConfig = field(default_factory=IAFConfig)
    flow: FlowConfig = field(default_factory=FlowConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


_POSITIVE = {
    "data.features",
    "data.size",
    "model.num_masks",
    "model.components",
    "iaf.latent",
    "iaf.importance_samples",
    "flow.layers",
    "train.epochs",
    "train.batch_size",
    "train.patience",
    "train.eval_batch_size",
    "data.max_levels",
}


def _validate(cfg: Config) -> None:
    flat = _flatten(dataclasses.asdict(cfg))
    for key in _POSITIVE:
        if flat[key] < 1:
            raise UsageError(f"{key} must be at least 1 (got {flat[key]})")
    if any(h < 1 for h in cfg.model.hidden):
        raise UsageError(f"model.hidden sizes must be at least 1 (got {list(cfg.model.hidden)})")
    if not (math.isfinite(cfg.train.lr) and cfg.train.lr > 0):
        raise UsageError(f"train.lr must be a positive number (got {cfg.train.lr})")
    if not (math.isfinite(cfg.train.weight_decay) and cfg.train.weight_decay >= 0):
        raise UsageError(f"train.weight_decay must be a number >= 0 (got {cfg.train.weight_decay})")
    for key, seed in (("seed", cfg.seed), ("data.seed", cfg.data.seed)):
        if not 0 <= seed < 2**63:
            raise UsageError(f"{key} must be between 0 and 2**63 - 1 (got {seed})")
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", cfg.name):
        raise UsageError(f"name may use letters, digits, '_', '.', '-' only (got {cfg.name!r})")
    if cfg.data.name == "npz" and not cfg.data.path:
        raise UsageError("data.path must name the .npz file when data.name is npz")
    _validate_table(cfg)
    _validate_iaf(cfg)
    _validate_values(cfg)
    _validate_flow(cfg)
    if cfg.model.num_masks > 1 and cfg.model.ordering != "random" and cfg.model.hidden_degrees != "random":
        raise UsageError(
            "model.num_masks > 1 needs model.ordering: random or model.hidden_degrees: random "
            "(otherwise every mask is the same)"
        )


def _validate_values(cfg: Config) -> None:
    """The head must fit the values, and the dataset must be able to give them."""
    data, model = cfg.data, cfg.model
    if data.values not in _DATASET_VALUES[data.name]:
        raise UsageError(
            f"data.values: {data.values} is not available for {data.name} "
            f"(it offers {', '.join(_DATASET_VALUES[data.name])})"
        )
    if model.head == "auto" and data.values != "mixed" and model.kind == "made":
        raise UsageError("model.head: auto is for tables (data.name: table): each column gets its own law")
    if data.values not in _HEAD_VALUES[model.head] and model.kind != "maf":  # a flow: _validate_flow
        fitting = [h for h, values in _HEAD_VALUES.items() if data.values in values]
        modelled = " or ".join(v for v in _HEAD_VALUES[model.head] if v != "mixed")  # tables aside
        raise UsageError(
            f"model.head: {model.head} models {modelled} data, but data.values is {data.values}; "
            f"use model.head: {' or '.join(fitting)}"
        )
    if data.values == "levels" and not 2 <= data.levels <= 256:
        raise UsageError(f"data.levels must be between 2 and 256 (got {data.levels})")
    if model.condition_on == "label" and data.name == "toy" and data.shape == "checkerboard":
        raise UsageError("data.shape: checkerboard is unlabelled (condition_on: label needs another shape)")
    if model.condition_on == "label" and data.name == "binarized_mnist":
        raise UsageError(
            "binarized_mnist (Larochelle's files) has no labels; for a class-conditional model use "
            "data.name: mnist (binarize: static)"
        )


def _validate_table(cfg: Config) -> None:
    """A table's file and columns: named once each, and only for data.name: table."""
    data = cfg.data
    named = {
        "data.columns": bool(data.columns),
        "data.label_column": data.label_column is not None,
        "data.context_columns": bool(data.context_columns),
        "data.split_column": data.split_column is not None,
        "data.exclude": bool(data.exclude),
        "data.missing": data.missing != "model",
    }
    if data.name != "table":
        given = [key for key, set_ in named.items() if set_]
        if given:
            raise UsageError(f"{given[0]} is for data.name: table (this config has data.name: {data.name})")
        return
    if cfg.model.kind == "iaf_vae":
        raise UsageError("model.kind: iaf_vae models binary images; a table takes model.kind: made or maf")
    if not data.path:
        raise UsageError("data.path must name the table (.csv, .tsv or .parquet) when data.name is table")
    both = [name for name in data.exclude if name in data.columns]
    if both:
        raise UsageError(f"column {both[0]!r} is in both data.columns and data.exclude")
    roles = [*data.columns, *data.context_columns, data.label_column, data.split_column]
    seen = [name for name in roles if name is not None]
    twice = sorted({name for name in seen if seen.count(name) > 1})
    if twice:
        raise UsageError(
            f"column {twice[0]!r} is named twice among data.columns, data.label_column, "
            "data.context_columns and data.split_column (each column has one role)"
        )
    if data.max_levels < 2:
        raise UsageError(f"data.max_levels must be at least 2 (got {data.max_levels})")
    if cfg.model.condition_on == "label" and data.label_column is None:
        raise UsageError(
            "model.condition_on: label on a table needs data.label_column (the column of classes)"
        )
    if data.label_column is not None and cfg.model.condition_on != "label":
        raise UsageError(
            f"data.label_column: {data.label_column} is used by model.condition_on: label (this config "
            "has condition_on: none; to model the column itself, put it in data.columns)"
        )


def _validate_iaf(cfg: Config) -> None:
    """The iaf section belongs to model.kind: iaf_vae, whose MADEs are single-mask flow steps."""
    model, iaf = cfg.model, cfg.iaf
    if model.kind != "iaf_vae":
        return
    for key in ("encoder", "decoder"):
        if any(h < 1 for h in getattr(iaf, key)):
            raise UsageError(f"iaf.{key} sizes must be at least 1 (got {list(getattr(iaf, key))})")
    for key in ("context", "steps", "warmup_epochs"):
        if getattr(iaf, key) < 0:
            raise UsageError(f"iaf.{key} must be at least 0 (got {getattr(iaf, key)})")
    if not (math.isfinite(iaf.free_bits) and iaf.free_bits >= 0):
        raise UsageError(f"iaf.free_bits must be a number >= 0 (got {iaf.free_bits})")
    refused = {
        "model.num_masks": (model.num_masks, 1),
        "model.head": (model.head, "bernoulli"),
        "model.condition_on": (model.condition_on, "none"),
    }
    for key, (value, only) in refused.items():
        if value != only:
            raise UsageError(f"{key}: {value} is not available for model.kind: iaf_vae (it needs {only})")
    if cfg.data.values != "binary":
        raise UsageError(f"model.kind: iaf_vae models binary data (data.values is {cfg.data.values})")
    if cfg.data.context_columns:
        raise UsageError("data.context_columns is not available for model.kind: iaf_vae (use made or maf)")


def _validate_flow(cfg: Config) -> None:
    """A flow (model.kind: maf) models real values with single-mask Gaussian layers."""
    model = cfg.model
    if model.kind != "maf":
        return
    if cfg.data.values not in ("real", "logit", "mixed"):
        raise UsageError(
            f"model.kind: maf models real values, but data.values is {cfg.data.values} (a flow "
            "takes data.values: logit from mnist or fashion_mnist, real from npz or toy, and tables)"
        )
    if model.num_masks != 1:
        raise UsageError(
            f"model.num_masks: {model.num_masks} is not available for model.kind: maf (it needs 1)"
        )
    if model.head not in ("bernoulli", "gaussian", "auto"):  # bernoulli, auto: defaults, left unset
        hint = " (for a mixture-of-Gaussians base, set flow.base: mog)" if model.head == "mog" else ""
        raise UsageError(
            f"model.head: {model.head} is not available for model.kind: maf: its layers are Gaussian{hint}"
        )


def check_seed(seed: int) -> None:
    """Seeds feed torch generators, which take 0 <= seed < 2**63."""
    if not 0 <= seed < 2**63:
        raise BadArgument("seed", f"must be between 0 and 2**63 - 1 (got {seed})")


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(map(str, typing.get_args(tp)))
    if origin is tuple:
        return "a list of strings" if typing.get_args(tp)[0] is str else "a list of integers"
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(
        tp, "null" if tp is type(None) else str(tp)
    )


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    bad = UsageError(f"{key} must be {_type_name(tp)} (got {value!r})")
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, key)
            except UsageError as e:  # try the next type of the union
                errors.append(e)
        raise bad from (errors[-1] if errors else None)
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise bad
        return value
    if origin is tuple:
        item = typing.get_args(tp)[0]
        one = isinstance(value, item) and not isinstance(value, bool)
        items = [value] if one else value
        if not isinstance(items, (list, tuple)):
            raise bad
        if not all(isinstance(v, item) and not isinstance(v, bool) for v in items):
            raise bad
        return tuple(items)
    if tp is bool:
        if not isinstance(value, bool):
            raise bad
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 as a string
            try:
                return float(value)
            except ValueError:
                raise bad from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise bad
        return value
    raise TypeError(f"unsupported config type {tp} for {key}")


T = TypeVar("T")


def _from_mapping(cls: type[T], mapping: Any, prefix: str) -> T:
    if mapping is None:
        mapping = {}
    if not isinstance(mapping, Mapping):
        raise UsageError(f"{prefix.rstrip('.') or 'the config'} must be a mapping of keys")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    for key in mapping:
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else ""
            raise UsageError(f"unknown key '{prefix}{key}'{hint}")
    kwargs = {}
    for name in names:
        if name not in mapping:
            continue
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            kwargs[name] = _from_mapping(tp, mapping[name], f"{prefix}{name}.")
        else:
            kwargs[name] = _coerce(mapping[name], tp, f"{prefix}{name}")
    return cls(**kwargs)


def config_from_dict(data: Mapping[str, Any], overrides: Iterable[str] = ()) -> Config:
    """Build and validate a Config from plain data and dotted overrides.

    Raises UsageError naming the key at fault.
    """
    data = copy.deepcopy(dict(data))
    for override in overrides:
        _apply_override(data, override)
    section = data.get("data")
    if isinstance(section, dict) and "name" not in section and _is_table_path(section.get("path")):
        section["name"] = "table"  # a config's data.path with a table's extension
    cfg = _from_mapping(Config, data, "")
    offered = _DATASET_VALUES[cfg.data.name]
    if "values" not in (data.get("data") or {}) and cfg.data.values not in offered:
        # a source with one kind of values (toy: reals; a table: its columns') needs no data.values
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, values=offered[0]))
    if cfg.data.name == "table" and "head" not in (data.get("model") or {}):  # each column its own law
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, head="auto"))
    for section, kind in _SECTIONS.items():
        if cfg.model.kind != kind and data.get(section):
            raise UsageError(
                f"the {section} section is for model.kind: {kind} (this config has kind: {cfg.model.kind})"
            )
    _validate(cfg)
    return cfg


_SECTIONS = {"iaf": "iaf_vae", "flow": "maf"}  # a section of settings that belongs to one model kind


def config_keys() -> list[str]:
    """Every dotted key a config has (``train.epochs``, ...), in file order."""
    return list(_flatten(dataclasses.asdict(Config())))


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """Plain data (lists, not tuples) that round-trips through YAML and checkpoints."""

    def plain(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, tuple):
            return [plain(x) for x in v]
        return v

    out = plain(dataclasses.asdict(cfg))
    for section, kind in _SECTIONS.items():  # a saved run keeps only its own kind's section
        if cfg.model.kind != kind:
            del out[section]
    return out


# read from (or downloaded into) a data root
_ROOT_DATASETS = (
    "binarized_mnist",
    "mnist",
    "fashion_mnist",
    "power",
    "gas",
    "hepmass",
    "miniboone",
    "bsds300",
)


def _applies(cfg: Config, key: str) -> bool:
    """Whether a dotted key means anything for this config's data source and model kind."""
    data, model = cfg.data, cfg.model
    made = model.kind == "made"
    return {
        "data.root": data.name in _ROOT_DATASETS,
        "data.path": data.name in ("npz", "table"),
        "data.binarize": data.name in ("mnist", "fashion_mnist") and data.values == "binary",
        "data.levels": data.values == "levels",
        "data.features": data.name == "synthetic",
        "data.size": data.name in ("synthetic", "toy"),
        "data.shape": data.name == "toy",
        "data.seed": data.name in ("table", "toy"),
        **dict.fromkeys(
            (
                "data.columns",
                "data.label_column",
                "data.context_columns",
                "data.split_column",
                "data.exclude",
                "data.missing",
                "data.max_levels",
            ),
            data.name == "table",
        ),
        "model.num_masks": made,
        "model.head": made,
        "model.components": (made and model.head in ("mog", "auto"))
        or (model.kind == "maf" and cfg.flow.base == "mog"),
        "model.condition_on": model.kind != "iaf_vae",
    }.get(key, True)


def config_to_yaml(cfg: Config) -> str:
    """The config as a person reads it: only the keys that apply to its data source and model
    kind (the others keep their defaults, so the file reads back to the same config)."""
    full = config_to_dict(cfg)
    shown = {
        section: {k: v for k, v in values.items() if _applies(cfg, f"{section}.{k}")}
        if isinstance(values, dict) else values
        for section, values in full.items()
    }  # fmt: skip
    return yaml.safe_dump(shown, sort_keys=False)


def _parse_yaml(text: str, source: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        raise UsageError(f"{where}: malformed YAML: {e.problem or e.context}") from None
    except yaml.YAMLError as e:
        raise UsageError(f"{source}: malformed YAML: {e}") from None


def _apply_override(data: dict[str, Any], override: str) -> None:
    key, sep, raw = override.partition("=")
    if not sep or not key:
        raise UsageError(f"override {override!r} must look like key.subkey=value")
    value = _parse_yaml(raw, f"override {key}") if raw else None
    node = data
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise UsageError(f"override {key}: '{part}' is not a section")
        node = child
    node[parts[-1]] = value


TABLE_EXTENSIONS = (".csv", ".tsv", ".parquet", ".pq")


def _is_table_path(path: Any) -> bool:
    return isinstance(path, str) and Path(path).suffix.lower() in TABLE_EXTENSIONS


# ``made train FILE``'s model and training for a table, chosen on small public tables
# (scripts/table_quality.py): an ensemble of 10 random orderings regularises where a few hundred
# rows would let one MADE overfit within a few epochs, and trains on to its early stop.
TABLE_DEFAULTS: dict[str, Any] = {
    "model": {"hidden": [256], "num_masks": 10, "ordering": "random"},
    "train": {"epochs": 400},
}


def table_config(path: Path, overrides: Iterable[str] = ()) -> dict[str, Any]:
    """The config of ``made train FILE`` for a table: the file's name for the runs, its data,
    and for a MADE (unless ``overrides`` name another kind) ``TABLE_DEFAULTS``."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", path.stem).strip("-.") or "table"
    config: dict[str, Any] = {"name": name, "data": {"name": "table", "path": str(path)}}
    probe = copy.deepcopy(config)
    for override in overrides:
        _apply_override(probe, override)
    if (probe.get("model") or {}).get("kind", "made") == "made":
        config.update(copy.deepcopy(TABLE_DEFAULTS))
    return config


def load_config(path: str | Path | None, overrides: Iterable[str] = ()) -> Config:
    """Read a YAML config (or the defaults when ``path`` is None) and apply dotted overrides. A
    table file (.csv, .tsv, .parquet) in a config's place is the data of a table model with the
    defaults (``table_config``)."""
    data: Any = {}
    if path is not None and _is_table_path(str(path)):
        if not Path(path).is_file():
            raise UsageError(f"data file not found: {path}")
        return config_from_dict(table_config(Path(path), overrides), overrides)
    if path is not None:
        p = Path(path)
        if p.is_dir():
            raise UsageError(f"{p} is a directory; give a YAML config file")
        if not p.is_file():
            raise UsageError(f"config file not found: {p}")
        try:
            text = p.read_text()
        except (OSError, UnicodeDecodeError) as e:
            raise UsageError(f"cannot read config {p}: {e}") from None
        data = _parse_yaml(text, str(p))
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise UsageError(f"{p}: the config must be a mapping of keys, not {type(data).__name__}")
    return config_from_dict(data, overrides)
