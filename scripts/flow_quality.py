"""Test NLL of made's neural spline flow (model.kind: nsf) against zuko's NSF of the same shape.

    pip install zuko scikit-learn
    python scripts/flow_quality.py                      # 2 toys (60 s per model), 2 tables (5 folds x 20 s)
    python scripts/flow_quality.py --datasets wine breast_cancer --folds 10 --table-seconds 30
    python scripts/flow_quality.py --quick              # tiny sizes and budgets: checks that it runs

Datasets: the 2-D toys checkerboard (uniform on 8 unit squares, entropy log 8) and
eight_gaussians (its exact density from ``made_cli.toys.toy_log_prob``; its entropy estimated
from 200000 fresh draws), 20000 train / 5000 valid / 5000 test rows each; scikit-learn's wine
(13 columns, 178 rows) and breast cancer (30 columns, 569 rows) tables. All float32. For a toy
the true entropy is printed: the expected test NLL of the true density, so a model's test NLL
lies above it up to noise.

Protocol, the same for both flows:

- Shape: 5 autoregressive layers of rational-quadratic splines with 8 bins on [-5, 5] (identity
  outside), each layer's MADE 2 hidden layers of 64 ReLU units, no direct connections, no batch
  norm, orderings alternating natural / reversed, a standard normal base. made: ``model.kind=nsf``
  with ``spline.bound=5.0``; zuko: ``zuko.flows.NSF(D, bins=8, transforms=5, hidden_features=[64,
  64])``. Parameter counts are printed: stored (every weight) and free (the weights the masks
  keep, plus biases).
- Inputs: made's ``fit_inputs`` on the train rows gives the standardising map (shift, scale); zuko
  trains on the rows standardised by the very same map, and its log p(x) of a raw row is its log
  p(z) - sum(log scale). ``--scale column`` (the default, as made's table runs) scales each column
  by its own standard deviation; ``--scale shared`` keeps what made's tensor-level MAF does by
  default, one scale for all columns (meant for images).
- Training: made's fused Adam (``make_optimizer``) for both, the same learning rate and batch
  size, the same batches in the same order (one seeded permutation per epoch, shared). made runs
  its own ``train_step``; zuko the loss -mean log p(z), zero_grad / backward / step, an update
  skipped where the loss is not finite, as made's ``train_step`` skips it. Both are initialised
  from --seed, afresh for every dataset and fold.
- Budget: both train in this one process, in alternate slices of about 0.5 s of their own
  training time, until each has trained for its budget. Each model's validation NLL is taken at
  its start, at its checks and at the end of its budget (not charged to the budget), and its best
  state kept; its test NLL (mean -log p over the test rows, nats) is that of the best state.
- Toys: one split (the sizes above, each drawn from a seed of its own), --seconds per model
  (default 60), a validation check every 2 s of the model's own training time.
- Tables: k-fold cross-validation (--folds, default 5). A numpy permutation seeded by --seed
  (default 0) of the table's rows is cut into k folds of near-equal size (``np.array_split``);
  fold i is the test set, fold (i+1) mod k the validation set and the other k-2 folds the
  training set (so with k = 5: 60/20/20). Each fold trains both models afresh (``fit_inputs`` on
  that fold's training rows, zuko standardised by the same map) for --table-seconds per model
  (default 20), with a validation check every --check-steps steps of each model (default one
  epoch of the fold's training rows, ceil(train rows / batch) steps). Every row is a test row of
  exactly one fold and a validation row of exactly one fold. The table's test NLL is the mean
  -log p over all its rows, each scored once by the best state of the fold it is a test row of,
  and made - zuko its paired mean difference over all rows with that mean's standard error.

Prints per toy the test NLL, steps and steps/s of both, the difference (made - zuko) with its
standard error over the test rows (paired: both score the same rows) and the speed ratio. Per
table, one line per fold (its rows, both models' test NLL, best-state step and steps, and the
fold's paired difference), then the pooled block: test NLL over all rows, validation NLL (the
folds' best validation NLLs averaged over all rows, each row validating once), steps and
skipped updates summed over the folds, steps/s = total steps / total training time, and the
paired difference over all rows. Then a Markdown table of all, and the CPU, torch and zuko
versions and threads. Steps/s are comparable only within a run (a shared machine's load changes
between runs); made/zuko is measured side by side.

--quick: toys of 2000/500/500 rows, 2 s per model with a check every 0.5 s (slices of 0.25 s);
tables in 3 folds of 0.5 s per model each, checks every --check-steps as above.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import math
import platform
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from made_cli.config import load_config
from made_cli.kinds import build_model
from made_cli.toys import toy_log_prob, toy_rows
from made_cli.train import make_optimizer, train_step

DATASETS = ("checkerboard", "eight_gaussians", "wine", "breast_cancer")
TOYS = ("checkerboard", "eight_gaussians")
ENTROPY_DRAWS = 200_000


@dataclass
class Data:
    """A dataset's float32 splits (N, D) and, for a toy, its true entropy in nats."""

    name: str
    train: torch.Tensor
    valid: torch.Tensor
    test: torch.Tensor
    entropy: float | None = None

    @property
    def features(self) -> int:
        return self.train.shape[1]

    def rows(self) -> str:
        return f"{len(self.train)}/{len(self.valid)}/{len(self.test)}"


def toy_entropy(shape: str) -> float:
    """The true entropy of a toy in nats: log 8 for the checkerboard, else -mean log p(x) over
    ``ENTROPY_DRAWS`` fresh draws (a seed of their own)."""
    if shape == "checkerboard":
        return math.log(8)
    x, _ = toy_rows(shape, ENTROPY_DRAWS, torch.Generator().manual_seed(12345))
    log_p = toy_log_prob(shape, x)
    assert log_p is not None
    return float(-log_p.mean())


def toy_data(shape: str, sizes: tuple[int, int, int], seed: int) -> Data:
    """A toy's train / valid / test rows, each split drawn from a seed of its own."""
    splits = [
        toy_rows(shape, n, torch.Generator().manual_seed(seed + i))[0].float() for i, n in enumerate(sizes)
    ]
    return Data(shape, *splits, entropy=toy_entropy(shape))


def table_rows(name: str) -> np.ndarray:
    """A scikit-learn table's rows (N, D), float32."""
    from sklearn import datasets

    loader = {"wine": datasets.load_wine, "breast_cancer": datasets.load_breast_cancer}[name]
    return np.asarray(loader().data, dtype=np.float32)


def table_folds(name: str, folds: int, seed: int) -> list[Data]:
    """A table's k-fold splits: a permutation seeded by ``seed`` cut into ``folds`` near-equal folds;
    split i tests on fold i, validates on fold (i + 1) mod k and trains on the rest."""
    x = table_rows(name)
    parts = np.array_split(np.random.default_rng(seed).permutation(len(x)), folds)
    splits = []
    for i in range(folds):
        test, valid = parts[i], parts[(i + 1) % folds]
        train = np.concatenate([parts[j] for j in range(folds) if j not in (i, (i + 1) % folds)])
        splits.append(Data(name, *(torch.from_numpy(x[np.sort(part)]) for part in (train, valid, test))))
    return splits


def stored_parameters(model: nn.Module) -> int:
    """Every stored parameter, masked-out weights included."""
    return sum(p.numel() for p in model.parameters())


def free_parameters(model: nn.Module) -> int:
    """The parameters that can be nonzero: each masked linear layer's kept weights and its bias."""
    total = 0
    for module in model.modules():
        mask = getattr(module, "mask", None)
        if isinstance(mask, torch.Tensor) and isinstance(module, nn.Linear):
            total += int(mask.sum()) + (module.bias.numel() if module.bias is not None else 0)
    return total


class Batches:
    """Batch ``i`` of a shared sequence: epoch e's rows in the order of a permutation seeded by
    (seed, e), so every model that asks for batch i gets the same rows."""

    def __init__(self, rows: torch.Tensor, batch: int, seed: int) -> None:
        self.rows, self.batch, self.seed = rows, batch, seed
        self.per_epoch = math.ceil(len(rows) / batch)
        self._orders: dict[int, torch.Tensor] = {}

    def __call__(self, i: int) -> torch.Tensor:
        epoch, at = divmod(i, self.per_epoch)
        if epoch not in self._orders:
            self._orders = {epoch: torch.randperm(len(self.rows), generator=torch.Generator().manual_seed(
                self.seed * 1_000_003 + epoch))}  # fmt: skip
        return self.rows[self._orders[epoch][at * self.batch : (at + 1) * self.batch]]


class Scores:
    """What a result says of its test rows and its pace (``test_log_p``, ``steps``, ``seconds``)."""

    test_log_p: torch.Tensor
    steps: int
    seconds: float

    @property
    def test_nll(self) -> float:
        return float(-self.test_log_p.mean()) if len(self.test_log_p) else math.nan

    @property
    def test_bad(self) -> int:
        """Test rows whose log p is not finite."""
        return int((~torch.isfinite(self.test_log_p)).sum())

    @property
    def rate(self) -> float:
        return self.steps / self.seconds if self.seconds > 0 else math.nan


@dataclass
class Trainee(Scores):
    """One model under training: its step and its log p of raw rows, with the time and steps it
    has used and its best validation state."""

    name: str
    model: nn.Module
    step: Callable[[int], bool]  # one update on batch i; False: the loss was not finite (skipped)
    log_prob: Callable[[torch.Tensor], torch.Tensor]  # log p(x) (B,) of raw rows, evaluation mode
    stored: int
    free: int
    steps: int = 0
    skipped: int = 0
    seconds: float = 0.0
    next_check: float = 0.0  # seconds of its training, or its step count, of the next validation check
    best_valid: float = math.inf
    best_step: int = 0
    best_state: dict[str, Any] = field(default_factory=dict)
    test_log_p: torch.Tensor = field(default_factory=lambda: torch.zeros(0))  # (N,) of the best state

    @torch.no_grad()
    def rows_log_p(self, x: torch.Tensor) -> torch.Tensor:
        """log p (N,) of each row of x, in evaluation mode."""
        self.model.eval()
        log_p = torch.cat([self.log_prob(part) for part in x.split(5000)])
        self.model.train()
        return log_p

    def check(self, valid: torch.Tensor) -> None:
        """Validation NLL now; keep the state if it is the best so far."""
        value = float(-self.rows_log_p(valid).mean())
        if math.isfinite(value) and value < self.best_valid:
            self.best_valid, self.best_step = value, self.steps
            self.best_state = copy.deepcopy(self.model.state_dict())

    def finish(self, test: torch.Tensor) -> None:
        """Test NLL of the best validation state."""
        if self.best_state:
            self.model.load_state_dict(self.best_state)
        self.test_log_p = self.rows_log_p(test)


@dataclass
class Pooled(Scores):
    """One model's results over a table's folds: its test log p of every row (in fold order), its
    steps, skipped updates and training time summed, and the folds' best validation NLLs averaged
    over all rows (each row validates in exactly one fold)."""

    name: str
    stored: int
    free: int
    steps: int
    skipped: int
    seconds: float
    best_valid: float
    test_log_p: torch.Tensor

    @classmethod
    def of(cls, folds: list[Trainee], valid_rows: list[int]) -> Pooled:
        first = folds[0]
        valid = sum(t.best_valid * n for t, n in zip(folds, valid_rows, strict=True)) / sum(valid_rows)
        return cls(first.name, first.stored, first.free, sum(t.steps for t in folds),
                   sum(t.skipped for t in folds), sum(t.seconds for t in folds), valid,
                   torch.cat([t.test_log_p for t in folds]))  # fmt: skip


def paired_difference(made: Trainee | Pooled, peer: Trainee | Pooled) -> tuple[float, float]:
    """made's test NLL minus the peer's and the standard error of that mean over the test rows
    (both score the same rows, so the per-row differences are paired)."""
    per_row = (peer.test_log_p - made.test_log_p).double()
    return float(per_row.mean()), float(per_row.std() / math.sqrt(len(per_row)))


def made_overrides(args: argparse.Namespace) -> list[str]:
    """The config of made's spline flow of the compared shape."""
    return ["data.name=toy", "model.kind=nsf", f"model.hidden={list(args.hidden)}", "model.direct=false",
            f"flow.layers={args.layers}", "flow.batch_norm=false", f"spline.bins={args.bins}",
            f"spline.bound={float(args.bound)}"]  # fmt: skip


def made_trainee(data: Data, batches: Batches, args: argparse.Namespace) -> Trainee:
    """made's NSF, its inputs fitted to the train rows, trained by its own ``train_step``."""
    torch.manual_seed(args.seed)
    model = build_model(load_config(None, made_overrides(args)), features=data.features)
    model.per_column = args.scale == "column"  # what a table run sets; False: one scale for all
    model.fit_inputs(data.train)
    if args.scale == "column" and not torch.allclose(model.input_scale, data.train.std(0).clamp_min(1e-3)):
        raise SystemExit("made's fit_inputs did not scale per column: has MAF.per_column changed?")
    opt = make_optimizer(model, args.lr, 0.0)
    model.train()

    def step(i: int) -> bool:
        return math.isfinite(train_step(model, opt, batches(i), i, batches.per_epoch))

    return Trainee("made nsf", model, step, model.log_prob, stored_parameters(model), free_parameters(model))


def zuko_trainee(
    data: Data, batches: Batches, shift: torch.Tensor, scale: torch.Tensor, args: argparse.Namespace
) -> Trainee:
    """zuko's NSF of the same shape on the rows standardised by made's map (shift, scale)."""
    import zuko

    torch.manual_seed(args.seed)
    flow = zuko.flows.NSF(
        data.features, bins=args.bins, transforms=args.layers, hidden_features=list(args.hidden)
    )
    opt = make_optimizer(flow, args.lr, 0.0)
    log_scale = scale.log().sum()
    flow.train()

    def step(i: int) -> bool:
        loss = -flow().log_prob((batches(i) - shift) / scale).mean()
        if not math.isfinite(loss.item()):
            return False
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return True

    def log_prob(x: torch.Tensor) -> torch.Tensor:
        return flow().log_prob((x - shift) / scale) - log_scale

    return Trainee(f"zuko {zuko.__version__} NSF", flow, step, log_prob, stored_parameters(flow),
                   free_parameters(flow))  # fmt: skip


def train_both(
    trainees: list[Trainee],
    valid: torch.Tensor,
    seconds: float,
    piece: float,
    every: float,
    check_steps: int | None = None,
) -> None:
    """Interleaved training: each trainee in turn trains for a slice of about ``piece`` seconds
    until each has trained for ``seconds``; a validation check every ``check_steps`` steps of a
    trainee, or where that is None every ``every`` seconds of its own training (and at its start
    and end either way), not charged to it. Each step is timed on its own, so a check (which may
    fall inside a slice) costs the trainee nothing."""
    interval = check_steps if check_steps is not None else every
    for t in trainees:
        t.check(valid)
        t.next_check = interval
    while any(t.seconds < seconds for t in trainees):
        for t in trainees:
            end = min(seconds, t.seconds + piece)
            while t.seconds < end:
                start = time.perf_counter()
                t.skipped += not t.step(t.steps)
                t.steps += 1
                t.seconds += time.perf_counter() - start
                if (t.steps if check_steps is not None else t.seconds) >= t.next_check:
                    t.check(valid)
                    t.next_check += interval
                elif t.seconds >= seconds:
                    t.check(valid)


def cpu_name() -> str:
    """The CPU's model name (lscpu), else platform.processor()."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown CPU"


@dataclass
class Row:
    """A dataset's line of the Markdown table: the toy's run, or the table's folds pooled."""

    name: str
    features: int
    rows: str
    entropy: float | None
    made: Trainee | Pooled
    peer: Trainee | Pooled


def print_models(made: Trainee | Pooled, peer: Trainee | Pooled, over: str) -> None:
    """Both models' numbers, the paired difference over ``over`` and the speed ratio."""
    print(f"  {'model':<18}{'test NLL':>10}{'best valid':>12}{'at step':>9}{'steps':>9}{'steps/s':>9}"
          f"{'skipped':>9}{'params stored':>15}{'free':>9}")  # fmt: skip
    for t in (made, peer):
        bad = f"  ({t.test_bad} test rows with log p not finite)" if t.test_bad else ""
        at = t.best_step if isinstance(t, Trainee) else "-"
        print(f"  {t.name:<18}{t.test_nll:>10.4f}{t.best_valid:>12.4f}{at:>9}{t.steps:>9}"
              f"{t.rate:>9.1f}{t.skipped:>9}{t.stored:>15}{t.free:>9}{bad}")  # fmt: skip
    difference, error = paired_difference(made, peer)
    print(f"  made - zuko: {difference:+.4f} nats (standard error {error:.4f}, paired over {over})   "
          f"steps/s made/zuko: {made.rate / peer.rate:.2f}")  # fmt: skip


def print_table(rows: list[Row]) -> None:
    """All datasets as one Markdown table (a table's steps summed over its folds)."""
    print("\n| dataset | D | rows | entropy | made NLL | zuko NLL | made - zuko (s.e.) | made steps "
          "| zuko steps | made steps/s | zuko steps/s | made/zuko speed |")  # fmt: skip
    print("|---|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for row in rows:
        made, peer = row.made, row.peer
        entropy = f"{row.entropy:.4f}" if row.entropy else "-"
        difference, error = paired_difference(made, peer)
        print(f"| {row.name} | {row.features} | {row.rows} | {entropy} | {made.test_nll:.4f} | "
              f"{peer.test_nll:.4f} | {difference:+.4f} ({error:.4f}) | {made.steps} | {peer.steps} | "
              f"{made.rate:.1f} | {peer.rate:.1f} | {made.rate / peer.rate:.2f} |")  # fmt: skip


def train_pair(
    data: Data,
    args: argparse.Namespace,
    seconds: float,
    piece: float,
    every: float,
    check_steps: int | None,
) -> tuple[Trainee, Trainee]:
    """Both models trained afresh on one split, interleaved, and tested at their best states;
    validation checks as ``train_both`` takes them."""
    batches = Batches(data.train, args.batch, args.seed)
    made = made_trainee(data, batches, args)
    shift, scale = made.model.input_shift.clone(), made.model.input_scale.clone()
    peer = zuko_trainee(data, batches, shift, scale, args)
    train_both([made, peer], data.valid, seconds, piece, every, check_steps)
    for t in (made, peer):
        t.finish(data.test)
    return made, peer


def run_toy(name: str, args: argparse.Namespace, seconds: float, piece: float, every: float) -> Row:
    """A toy: one split, checks every ``every`` seconds of training."""
    sizes = (2000, 500, 500) if args.quick else (20000, 5000, 5000)
    data = toy_data(name, sizes, 100 * args.seed)
    made, peer = train_pair(data, args, seconds, piece, every, None)
    print(f"\n{data.name}: D={data.features}, rows {data.rows()} (train/valid/test), true entropy "
          f"{data.entropy:.4f} nats (a lower bound on the test NLL)")  # fmt: skip
    print_models(made, peer, "the test rows")
    return Row(name, data.features, data.rows(), data.entropy, made, peer)


def run_table(name: str, args: argparse.Namespace, folds: int, seconds: float, piece: float) -> Row:
    """A table: k-fold cross-validation, a line per fold, then the folds pooled over all rows."""
    splits = table_folds(name, folds, args.seed)
    total, features = sum(len(d.test) for d in splits), splits[0].features
    every = f"{args.check_steps} steps" if args.check_steps else "epoch of its training rows"
    print(
        f"\n{name}: D={features}, {total} rows in {folds} folds (fold i tests, fold i+1 mod {folds} "
        f"validates, the rest trains), {seconds:g} s per model per fold, a validation check every {every}"
    )
    print(f"  {'fold':>4}{'train/valid/test':>18}{'check':>7}{'made NLL':>10}{'at step':>9}{'steps':>7}"
          f"{'zuko NLL':>10}{'at step':>9}{'steps':>7}   made - zuko (s.e.)")  # fmt: skip
    pairs = []
    for i, data in enumerate(splits):
        check = args.check_steps or math.ceil(len(data.train) / args.batch)  # one epoch: Batches.per_epoch
        made, peer = train_pair(data, args, seconds, piece, math.nan, check)
        difference, error = paired_difference(made, peer)
        print(f"  {i:>4}{data.rows():>18}{check:>7}{made.test_nll:>10.4f}{made.best_step:>9}{made.steps:>7}"
              f"{peer.test_nll:>10.4f}{peer.best_step:>9}{peer.steps:>7}   {difference:+.4f} ({error:.4f})",
              flush=True)  # fmt: skip
        pairs.append((made, peer))
    valid_rows = [len(d.valid) for d in splits]
    made, peer = (Pooled.of([pair[j] for pair in pairs], valid_rows) for j in (0, 1))
    print(f"  all {total} rows (each scored once, as a test row of its fold):")
    print_models(made, peer, f"all {total} rows")
    return Row(name, features, f"{total} ({folds}-fold)", None, made, peer)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", choices=DATASETS, default=list(DATASETS))
    parser.add_argument("--seconds", type=float, default=60.0, help="training time per model per toy")
    parser.add_argument("--table-seconds", type=float, default=20.0,
                        help="training time per model per fold of a table")  # fmt: skip
    parser.add_argument("--folds", type=int, default=5, help="a table's cross-validation folds (at least 3)")
    parser.add_argument("--check-steps", type=int, default=0,
                        help="a table's validation check every this many steps (0: one epoch)")  # fmt: skip
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--layers", type=int, default=5, help="flow layers (zuko's transforms)")
    parser.add_argument("--hidden", type=int, nargs="+", default=[64, 64], help="each MADE's hidden widths")
    parser.add_argument("--bins", type=int, default=8)
    parser.add_argument("--bound", type=float, default=5.0, help="made's spline.bound (zuko's is 5)")
    parser.add_argument("--scale", choices=("column", "shared"), default="column",
                        help="each column by its own std, or all by one (made's tensor default)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="the tables' folds, the batches, the init")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny toys, 2 s per toy, 3 folds x 0.5 s per table: checks that it runs",
    )
    args = parser.parse_args()
    if args.bound != 5.0:
        parser.error("zuko's NSF splines are on [-5, 5] (no argument changes it): --bound 5")
    if args.folds < 3:
        parser.error("--folds: at least 3 (a test fold, a validation fold and a training fold)")
    if args.check_steps < 0:
        parser.error("--check-steps: 0 (one epoch) or more")
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    if not importlib.util.find_spec("zuko"):
        print("zuko is not installed (pip install zuko): nothing to compare made's NSF with")
        return
    import zuko

    seconds, piece, every = (2.0, 0.25, 0.5) if args.quick else (args.seconds, 0.5, 2.0)
    folds, table_seconds = (3, 0.5) if args.quick else (args.folds, args.table_seconds)
    print(f"made's NSF against zuko {zuko.__version__}'s: {args.layers} layers of {args.bins}-bin splines on "
          f"[-{args.bound:g}, {args.bound:g}], MADEs {args.hidden}, batch {args.batch}, lr {args.lr:g}, "
          f"{args.scale} scale; training interleaved, {seconds:g} s per model per toy, {folds} folds x "
          f"{table_seconds:g} s per model per table")  # fmt: skip
    rows = [
        run_toy(name, args, seconds, piece, every)
        if name in TOYS
        else run_table(name, args, folds, table_seconds, piece)
        for name in args.datasets
    ]
    print_table(rows)
    print(f"\nCPU: {cpu_name()}; torch {torch.__version__}, zuko {zuko.__version__}, "
          f"{torch.get_num_threads()} thread(s)")  # fmt: skip


if __name__ == "__main__":
    main()
