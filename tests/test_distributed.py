"""Distributed data parallel on CPU: two gloo processes agree on every parameter; only rank 0 writes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pytest
import torch
import torch.multiprocessing as mp

from made_cli import distributed
from made_cli.config import load_config
from made_cli.train import Trainer, train

from .conftest import REPO
from .test_tables import _shop

OVERRIDES = ["data.name=synthetic", "data.features=10", "data.size=2000", "model.hidden=[24]",
             "model.ordering=random", "model.num_masks=2", "train.epochs=2",
             "train.batch_size=50"]  # fmt: skip
# a flow: each rank's batches move its batch-norm statistics, which must still agree
FLOW = ["data.name=toy", "data.size=2000", "model.kind=maf", "model.hidden=[24]", "flow.layers=2",
        "train.epochs=2", "train.batch_size=50"]  # fmt: skip
# a table: labels and context columns go with each rank's rows
TABLE = ["data.name=table", "data.path={tmp}/t.csv", "data.columns=[kind, items, amount]",
         "data.label_column=channel", "data.context_columns=[hour]", "model.condition_on=label",
         "model.hidden=[24]", "train.epochs=2", "train.batch_size=50"]  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, root: str, overrides: list[str]) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world),
                      RANK=str(rank), LOCAL_RANK=str(rank))  # fmt: skip
    torch.set_num_threads(1)
    trainers = []
    real_run = Trainer.run

    def keep(self: Trainer):  # remember this rank's trainer, to read its own parameters
        trainers.append(self)
        return real_run(self)

    Trainer.run = keep
    group, device = distributed.from_env(torch.device("cpu"))
    # each rank proposes its own directory: rank 0's must win, and only rank 0 may write
    proposed = Path(root) / f"rank{rank}"
    result = train(load_config(None, overrides), proposed, device, group=group)
    params = {k: v.detach().clone() for k, v in trainers[0].model.state_dict().items()}
    out = Path(root) / "from-test"  # written by the test harness, not by the tool
    out.mkdir(exist_ok=True)
    torch.save({"params": params, "test_nll": result.test_nll, "run_dir": str(result.run_dir)},
               out / f"{rank}.pt")  # fmt: skip
    torch.distributed.destroy_process_group()


@pytest.mark.parametrize("overrides", [OVERRIDES, FLOW, TABLE], ids=["made", "maf", "table"])
def test_two_cpu_ranks_agree_on_parameters_and_only_rank_0_writes(tmp_path: Path, overrides) -> None:
    if overrides is TABLE:
        data = _shop(1000)
        data["hour"] = np.random.default_rng(1).integers(0, 24, 1000)
        pcsv.write_csv(pa.table(data), tmp_path / "t.csv")
        overrides = [o.format(tmp=tmp_path) for o in overrides]
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path), overrides), nprocs=2, join=True)
    assert (tmp_path / "rank0" / "checkpoints" / "last.pt").is_file()
    assert not (tmp_path / "rank1").exists()
    a = torch.load(tmp_path / "from-test" / "0.pt", weights_only=True)
    b = torch.load(tmp_path / "from-test" / "1.pt", weights_only=True)
    assert a["test_nll"] == b["test_nll"]
    assert a["run_dir"] == b["run_dir"] == str(tmp_path / "rank0")
    assert a["params"].keys() == b["params"].keys()
    for key in a["params"]:
        assert torch.equal(a["params"][key], b["params"][key]), key
    metrics = (tmp_path / "rank0" / "metrics.jsonl").read_text().splitlines()
    assert len(metrics) == 3  # two epochs and the test line, written once


def test_torchrun_runs_the_cli_with_two_processes(tmp_path: Path, tiny_config: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
           "-m", "made_cli", "train", str(tiny_config), "--run-dir", str(tmp_path / "run"),
           "--device", "cpu"]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("test NLL") == 1  # rank 0 alone prints
    assert (tmp_path / "run" / "checkpoints" / "best.pt").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "tiny.yaml"]


def test_settled_holds_the_tensor_until_the_backend_lets_go() -> None:
    """A collective's worker may still hold the tensor when the call returns (gloo frees its work
    record a moment later); _settled must not return before that reference is gone."""
    import threading
    import time

    tensor = torch.zeros(3, requires_grad=True)
    held: list[torch.Tensor] = []

    def collective() -> None:  # returns at once, like a finished collective whose record lingers
        held.append(tensor * torch.ones(3, requires_grad=True))  # its graph holds the tensor in C++
        assert tensor._use_count() > 1
        threading.Timer(0.2, held.clear).start()

    start = time.monotonic()
    distributed._settled(tensor, collective)
    assert tensor._use_count() == 1
    assert not held
    assert time.monotonic() - start >= 0.15
