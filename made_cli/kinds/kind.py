"""What the toolkit knows of a model kind: ``Kind``, torch-free, with its models imported on use.

A kind is a package under ``made_cli/kinds/``: its ``__init__`` defines ``KIND`` (config
sections, checks, summary; no torch, so reading a config stays light) and ``KIND.module`` names
the module that holds its models, which defines ``build``, ``verify`` and ``describe``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..sections import ConfigView

if TYPE_CHECKING:
    from ..interface import DensityModel, Verification

__all__ = ["Kind", "check_positive"]


def _nothing(cfg: ConfigView) -> None:
    return None


def _every_key(cfg: ConfigView, key: str) -> bool:
    return True


def check_positive(cfg: ConfigView, *keys: str) -> None:
    """Each dotted key of ``cfg`` (``flow.layers``) is at least 1."""
    from ..errors import UsageError

    for key in keys:
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        if value < 1:
            raise UsageError(f"{key} must be at least 1 (got {value})")


@dataclass(frozen=True)
class Kind:
    """A model kind: ``model.kind``'s name, the config it reads and what its numbers mean."""

    name: str
    module: str  # holds its models and build(config, features, classes, columns=, context=),
    # verify(model, points) (the rows of `made verify-ar`), describe(config, model) ("model:" line)
    summary: Callable[[Mapping[str, Any]], str]  # a saved config (plain data) in a few words
    sections: Mapping[str, type] = field(default_factory=dict)  # config sections it reads: name -> dataclass
    validate: Callable[[ConfigView], None] = _nothing  # its checks of a whole config (UsageError)
    model_key: Callable[[ConfigView, str], bool] = _every_key  # whether a model.* key means anything to it
    head_is_law: bool = False  # model.head is the law of its conditionals (checked against data.values)
    tables: bool = True  # whether it models a table (data.name: table)
    table_defaults: Mapping[str, Any] = field(default_factory=dict)  # `made train FILE`'s settings for it
    measure: str = "NLL"  # what its validation and test numbers are: the NLL, or a bound on it
    loss_name: str = "train_nll"  # the metrics key of its training loss
    note: str | None = None  # said after training and under `made runs`, if the numbers need it
    # overrides of a small config of this kind that tests/test_kinds.py's contract checks train
    # and probe (2-D real data for the grids, or a few binary dimensions to enumerate)
    contract: tuple[str, ...] = ()

    def _part(self, name: str) -> Any:
        return getattr(importlib.import_module(self.module), name)

    @property
    def build(self) -> Callable[..., DensityModel]:
        """(config, features, classes, columns=, context=) -> an untrained model."""
        return self._part("build")

    @property
    def verify(self) -> Callable[[Any, int], Verification]:
        """(model, points) -> the checks of `made verify-ar`."""
        return self._part("verify")

    @property
    def describe(self) -> Callable[[Any, Any], str]:
        """(config, model) -> the "model:" line of training."""
        return self._part("describe")
