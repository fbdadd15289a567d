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
from dataclasses import field, make_dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import yaml

from .errors import BadArgument, UsageError
from .kinds import KINDS, kind_of, sections
from .sections import DataConfig, ModelConfig, TrainConfig

__all__ = [
    "Config",
    "DataConfig",
    "ModelConfig",
    "TrainConfig",
    "check_seed",
    "config_from_dict",
    "config_keys",
    "config_to_dict",
    "config_to_yaml",
    "load_config",
    "saved_config",
]

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

# The whole config: the shared sections, then each kind's own (``kinds.sections()``: a flow's
# ``flow``, a VAE's ``iaf``), then train. A section a kind adds appears here by itself.
Config: Any = make_dataclass(
    "Config",
    [
        ("name", str, field(default="made", metadata={"doc": "The run directory's prefix."})),
        ("seed", int, field(default=0, metadata={"doc": "Seeds the weights, masks, order and noise."})),
        ("data", DataConfig, field(default_factory=DataConfig)),
        ("model", ModelConfig, field(default_factory=ModelConfig)),
        *((name, section, field(default_factory=section)) for name, section in sections().items()),
        ("train", TrainConfig, field(default_factory=TrainConfig)),
    ],
    frozen=True,
)
Config.__module__, Config.__doc__ = __name__, "A whole config: data, model, each kind's own sections, train."

# the sections of settings that belong to some kinds only: section -> the kinds that read it
_SECTIONS = {name: [k for k, kind in KINDS.items() if name in kind.sections] for name in sections()}


def saved_config(data: Mapping[str, Any], overrides: Iterable[str] = ()) -> Config:
    """A run's saved config (a checkpoint's plain data) as a Config: ``config_from_dict``, once
    the sections its kind does not read are dropped (runs saved before a kind kept only its own
    sections carry every kind's defaults)."""
    data, model = dict(data), data.get("model")
    kind = str(model.get("kind", "made")) if isinstance(model, Mapping) else "made"
    for section, kinds in _SECTIONS.items():
        if kind not in kinds:
            data.pop(section, None)
    return config_from_dict(data, overrides)


_POSITIVE = (
    "data.features",
    "data.size",
    "model.num_masks",
    "model.components",
    "train.epochs",
    "train.batch_size",
    "train.patience",
    "train.eval_batch_size",
    "data.max_levels",
)


def _validate(cfg: Config) -> None:
    flat = _flatten(dataclasses.asdict(cfg))
    for key in _POSITIVE:  # a kind's own sections: its validate
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
    data = cfg.data
    if data.values not in _DATASET_VALUES[data.name]:
        raise UsageError(
            f"data.values: {data.values} is not available for {data.name} "
            f"(it offers {', '.join(_DATASET_VALUES[data.name])})"
        )
    kind_of(cfg.model.kind).validate(cfg)
    _validate_values(cfg)
    if cfg.model.num_masks > 1 and cfg.model.ordering != "random" and cfg.model.hidden_degrees != "random":
        raise UsageError(
            "model.num_masks > 1 needs model.ordering: random or model.hidden_degrees: random "
            "(otherwise every mask is the same)"
        )


def _validate_values(cfg: Config) -> None:
    """The head must fit the values (which the dataset can give)."""
    data, model = cfg.data, cfg.model
    if kind_of(model.kind).head_is_law:  # a flow's or a VAE's own checks say what it takes
        if model.head == "auto" and data.values != "mixed":
            raise UsageError(
                "model.head: auto is for tables (data.name: table): each column gets its own law"
            )
        if data.values not in _HEAD_VALUES[model.head]:
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
    if not kind_of(cfg.model.kind).tables:
        takers = [name for name, kind in KINDS.items() if kind.tables]
        raise UsageError(
            f"model.kind: {cfg.model.kind} does not model tables; a table takes model.kind: "
            f"{', '.join(takers[:-1])} or {takers[-1]}"
        )
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
    kind_of(cfg.model.kind)
    for section, kinds in _SECTIONS.items():
        if cfg.model.kind not in kinds and data.get(section):
            raise UsageError(
                f"the {section} section is for model.kind: {' or '.join(kinds)} (this config has kind: "
                f"{cfg.model.kind})"
            )
    _validate(cfg)
    return cfg


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
    for section, kinds in _SECTIONS.items():  # a saved run keeps only its own kind's sections
        if cfg.model.kind not in kinds:
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
    data = cfg.data
    if key.startswith("model."):
        return bool(kind_of(cfg.model.kind).model_key(cfg, key))
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


def table_config(path: Path, overrides: Iterable[str] = ()) -> dict[str, Any]:
    """The config of ``made train FILE`` for a table: the file's name for the runs, its data,
    and its kind's ``table_defaults`` (a MADE's unless ``overrides`` name another kind)."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", path.stem).strip("-.") or "table"
    config: dict[str, Any] = {"name": name, "data": {"name": "table", "path": str(path)}}
    probe = copy.deepcopy(config)
    for override in overrides:
        _apply_override(probe, override)
    kind = KINDS.get(str((probe.get("model") or {}).get("kind", "made")))
    if kind is not None:
        config.update(copy.deepcopy(dict(kind.table_defaults)))
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
