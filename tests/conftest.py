"""Shared fixtures: the offline data root, tiny configs, enumeration of all binary vectors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MADE_DATA_DIR") or REPO.parent / "shared" / "data").resolve()


def all_binary(d: int) -> torch.Tensor:
    """Every vector of {0, 1}^d, (2^d, d) float."""
    return ((torch.arange(2**d)[:, None] >> torch.arange(d)) & 1).float()


def tamper(layer, forbidden: torch.Tensor, count: int | None = 1) -> None:
    """Switch on ``count`` (None: all) forbidden connections that ``layer`` (a MaskedLinear)
    computes with: their mask entries and nonzero weights, in whichever storage it uses."""
    stored = forbidden if layer.plan is None else forbidden & layer.plan.covered()
    entries = stored.nonzero()[:count]
    assert len(entries), "no forbidden entry is stored"
    layer.mask[entries[:, 0], entries[:, 1]] = 1.0
    layer.sync_plan()  # a reordered plan keeps its own copy of the mask
    state = layer.state_dict()  # the whole matrix, read back through the tampered mask
    state["weight"][entries[:, 0], entries[:, 1]] = 0.5
    layer.load_state_dict(state)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture
def data_root() -> Path:
    if not (SHARED_DATA / "binarized_mnist" / "binarized_mnist_test.amat").exists():
        pytest.skip(f"binarized MNIST not found under {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def tiny_config(tmp_path: Path) -> Path:
    """A synthetic 9-dimensional config that trains in about a second."""
    path = tmp_path / "tiny.yaml"
    path.write_text(
        "name: tiny\nseed: 0\n"
        "data: {name: synthetic, features: 9, size: 600}\n"
        "model: {hidden: [16, 16], ordering: random, num_masks: 1}\n"
        "train: {epochs: 2, batch_size: 50, lr: 0.01, patience: 2}\n"
    )
    return path
