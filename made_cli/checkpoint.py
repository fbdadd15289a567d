"""Checkpoints: the format, loading, a model rebuilt from one, and the check that data still fit it.

A checkpoint holds tensors and plain values only, so it loads with ``torch.load(weights_only=True)``
and one that carries pickled code is refused without running it. ``train.Trainer.state_dict``
writes it; everything that reads one goes through here.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from .config import Config, saved_config
from .errors import UsageError
from .heads import ColumnLaw
from .interface import DensityModel
from .kinds import build_model

__all__ = [
    "CHECKPOINT_FORMAT",
    "check_data",
    "checkpoint_bytes",
    "load_checkpoint",
    "model_from_checkpoint",
    "recorded_root",
    "recorded_table",
    "restore_model",
]

CHECKPOINT_FORMAT = 2  # 2: epoch order from (seed, epoch), world size, no shuffle RNG state
_REQUIRED_KEYS = ("config", "features", "model")


def checkpoint_bytes(state: dict[str, Any]) -> bytes:
    """Serialise a checkpoint once, so the same bytes can go to last.pt and best.pt."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def load_checkpoint(
    path: Path, map_location: str | torch.device = "cpu", mmap: bool = False
) -> dict[str, Any]:
    """Load a checkpoint with weights_only=True: tensors and plain values, no code is unpickled.

    ``mmap`` maps the tensors instead of reading them: enough to check that a checkpoint loads.
    """
    if not path.is_file():
        raise UsageError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as e:  # an untrusted file: whatever it does to the unpickler is bad input
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UsageError(f"corrupt or unsafe checkpoint {path}: {first}") from None
    if not isinstance(state, dict) or state.get("format_version") != CHECKPOINT_FORMAT:
        raise UsageError(f"{path} is not a made checkpoint (format {CHECKPOINT_FORMAT})")
    missing = [k for k in _REQUIRED_KEYS if k not in state]
    if missing:
        raise UsageError(f"corrupt checkpoint {path}: missing {', '.join(missing)}")
    return state


def restore_model(model: torch.nn.Module, state: dict[str, Any], path: Path) -> None:
    """Load a checkpoint's weights into a model built from its config; a mismatch is bad input."""
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, KeyError, ValueError) as e:
        raise UsageError(f"{path} does not match its config: {' '.join(str(e).split())}") from None


def model_from_checkpoint(
    state: dict[str, Any], path: Path, device: str | torch.device = "cpu"
) -> tuple[Config, DensityModel]:
    """The config and the model (in eval mode, on ``device``) a loaded checkpoint holds."""
    config = saved_config(state["config"])
    model = build_model(
        config, int(state["features"]), int(state.get("classes", 0)), columns=column_laws(state),
        context=int(state.get("context_features", 0)),
    )  # fmt: skip
    restore_model(model, state, path)
    model.to(device).eval()
    return config, model


def column_laws(state: dict[str, Any]) -> tuple[ColumnLaw, ...] | None:
    """A table run's column laws; a run saved before they were kept has its columns' categories
    only, and its real columns keep the law they were trained with (``ColumnLaw.legacy``)."""
    laws = state.get("column_laws")
    if laws is not None:
        return tuple(ColumnLaw.from_dict(d) for d in laws)
    levels = state.get("column_levels")
    return None if levels is None else tuple(ColumnLaw(levels=int(v), legacy=True) for v in levels)


def recorded_root(state: dict[str, Any]) -> str | None:
    """The data root a checkpoint's run read its data from (for runs from before it was kept,
    the data.root their config named, if any)."""
    return state.get("data_root") or (state["config"].get("data") or {}).get("root")


def recorded_table(state: dict[str, Any]) -> dict[str, Any] | None:
    """A table run's schema and split (``data.table_record``), to apply to its file as they were."""
    return state.get("table")


def check_data(features: int, classes: int, model_features: int, model_classes: int, where: str) -> None:
    """Data of ``features`` dimensions and ``classes`` label classes fit a model trained on
    ``model_features`` and (if it is class-conditional) ``model_classes``; else a usage error."""
    if features != model_features:
        raise UsageError(f"the data has {features} dimensions but {where} was trained on {model_features}")
    if model_classes and classes != model_classes:
        raise UsageError(f"the data has {classes} label classes but {where} was trained on {model_classes}")
