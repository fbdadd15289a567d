"""Run directories: atomic writes, safe checkpoint loading, finding the newest run."""

import os
import pickle
from pathlib import Path

import pytest
import torch

from made_cli.checkpoint import CHECKPOINT_FORMAT, checkpoint_bytes, load_checkpoint
from made_cli.config import config_to_dict, load_config
from made_cli.errors import UsageError
from made_cli.kinds import build_model
from made_cli.runs import atomic_write_bytes, load_run, new_run_dir, resolve_run, write_config


def _make_run(parent: Path, name: str = "r") -> Path:
    cfg = load_config(
        None,
        [
            "data.name=synthetic",
            "data.features=5",
            "model.hidden=[8]",
            "model.ordering=random",
            "model.num_masks=2",
        ],
    )
    run = new_run_dir(name, parent)
    write_config(run, cfg)
    state = {
        "format_version": CHECKPOINT_FORMAT,
        "config": config_to_dict(cfg),
        "features": 5,
        "image_shape": None,
        "model": build_model(cfg, 5).state_dict(),
    }
    atomic_write_bytes(run / "checkpoints" / "best.pt", checkpoint_bytes(state))
    return run


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    atomic_write_bytes(path, b"one")
    atomic_write_bytes(path, b"two")
    assert path.read_bytes() == b"two"
    assert os.listdir(tmp_path) == ["f.bin"]


def test_new_run_dirs_never_collide_and_newest_is_found(tmp_path: Path) -> None:
    a = _make_run(tmp_path)
    b = _make_run(tmp_path)
    assert a != b
    assert resolve_run(None, tmp_path) == b
    with pytest.raises(UsageError, match="no runs under"):
        resolve_run(None, tmp_path / "empty")


def test_load_run_restores_degrees_exactly(tmp_path: Path) -> None:
    run_dir = _make_run(tmp_path)
    state = torch.load(run_dir / "checkpoints" / "best.pt", weights_only=True)
    for target in (run_dir, run_dir / "checkpoints" / "best.pt"):
        run = load_run(target)
        assert torch.equal(run.model.net.ranks, state["model"]["net.ranks"])
        assert run.dir == run_dir and run.config.model.num_masks == 2


class Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_a_checkpoint_carrying_pickled_code_is_refused_unrun(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"format_version": 1, "x": Evil()}, protocol=2))
    with pytest.raises(UsageError, match="corrupt or unsafe checkpoint"):
        load_checkpoint(path)
    torch.save({"format_version": 1, "x": Evil()}, path)
    with pytest.raises(UsageError, match="corrupt or unsafe checkpoint"):
        load_checkpoint(path)
    assert not (tmp_path / "pwned").exists()


def test_corrupt_degrees_are_refused(tmp_path: Path) -> None:
    run_dir = _make_run(tmp_path)
    path = run_dir / "checkpoints" / "best.pt"
    state = torch.load(path, weights_only=True)
    state["model"]["net.hidden_degrees_0"][0, 0] = 0  # a unit of degree 0: no input at all
    atomic_write_bytes(path, checkpoint_bytes(state))
    with pytest.raises(UsageError, match="corrupt degrees"):
        load_run(run_dir)
    state["model"]["net.hidden_degrees_0"][0, 0] = 1
    state["model"]["net.ranks"][0, 0] = state["model"]["net.ranks"][0, 1]  # not a permutation
    atomic_write_bytes(path, checkpoint_bytes(state))
    with pytest.raises(UsageError, match="not a permutation"):
        load_run(run_dir)


def test_truncated_checkpoint_names_the_file(tmp_path: Path) -> None:
    run_dir = _make_run(tmp_path)
    path = run_dir / "checkpoints" / "best.pt"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(UsageError, match=str(path)):
        load_run(run_dir)
