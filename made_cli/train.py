"""The training loop: Adam, the model's own schedule, early stopping, resumable at any batch."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import io
import json
import logging
import math
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler

from .checkpoint import (
    CHECKPOINT_FORMAT,
    check_data,
    checkpoint_bytes,
    load_checkpoint,
    model_from_checkpoint,
    recorded_root,
    recorded_table,
    restore_model,
)
from .condition import UNCONDITIONAL, Condition
from .config import Config, config_to_dict, saved_config
from .data import DROPPED, Dataset, load_dataset, table_record
from .distributed import SINGLE, Dist
from .errors import BadArgument, Interrupted, MadeError, UsageError
from .evaluation import condition_for, evaluate_terms, tf32
from .heads import Bernoulli, Head
from .interface import DensityModel
from .kinds import build_model, kind_of
from .made import load_portable_optimizer_state, parameter_counts, portable_optimizer_state
from .runs import (
    SCHEMA_FILE,
    atomic_write_bytes,
    atomic_write_text,
    new_run_dir,
    record_invocation,
    remove_stale_temps,
    write_config,
)

__all__ = [
    "Interrupted",
    "TrainResult",
    "Trainer",
    "independent_baseline_nll",
    "make_optimizer",
    "resolve_device",
    "resume",
    "train",
    "train_step",
]


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    best_epoch: int
    epochs_run: int
    valid_nll: float
    test_nll: float
    valid_bpd: float | None  # bits/dim of the data as stored; None for plain real values
    test_bpd: float | None
    estimator: str
    seconds: float
    measure: str = "NLL"  # what valid_nll and test_nll are: the NLL, or a bound on it (-ELBO)


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; asking for CUDA without it is a usage error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise BadArgument("device", "cuda was asked for, but no CUDA device is available")
    if name not in ("cpu", "cuda"):
        raise BadArgument("device", f"must be auto, cpu or cuda (got {name!r})")
    return torch.device(name)


def independent_baseline_nll(
    train: torch.Tensor, test: torch.Tensor, head: Head | None = None, batch_size: int = 500
) -> float:
    """NLL of the head fitted to each training marginal on its own: the bar any MADE must beat."""
    head = (head or Bernoulli()).baseline()
    params = head.init_bias(train)[None]  # (1, P, D)
    total = 0.0
    for i in range(0, test.shape[0], batch_size):  # (B, P, D) at once can be gigabytes
        rows = test[i : i + batch_size]
        missing = torch.isnan(rows)  # a table's missing cells: the observed cells' marginals
        filled = torch.where(missing, 0.0, rows) if not missing.any() else torch.where(
            missing, head.fill_value().to(rows), rows)  # type: ignore[attr-defined]  # fmt: skip
        dims = head.log_prob(params.expand(rows.shape[0], -1, -1), filled)
        total += float(torch.where(missing, 0.0, dims).sum())
    return -total / test.shape[0]


def make_optimizer(model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.Adam:
    """Adam, fused into one kernel where torch has it for the device.

    Measured here: on masked weights the unfused update spends much of a step on sqrt of the
    zeros the masks keep in Adam's state; fused, a 1x500 MADE trains about 20% faster.
    """
    try:
        return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, ValueError):  # no fused kernel for this device or dtype
        return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)


def train_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    step: int,
    steps_per_epoch: int,
    group: Dist = SINGLE,
    given: Condition = UNCONDITIONAL,
    noise: torch.Generator | None = None,
) -> float:
    """One Adam step on the model's training loss; returns the loss, skips the update if not finite.

    ``model`` is a model or its DistributedDataParallel wrapper; it owns its schedule (a MADE's
    mask of the step, a VAE's KL weight), so it is given the step. In a group the loss is
    averaged over ranks first, so that all of them step or stop together. ``noise`` feeds
    whatever the loss draws (a VAE's posterior samples, a flow's dequantisation); ``given``:
    the batch's labels and context columns, for a model conditioned on them.
    """
    loss = model(x, step, steps_per_epoch, given, noise).mean()
    value = group.sum([loss.item()], x.device)[0] / group.world
    if math.isfinite(value):
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return value


class _SignalFlag:
    """Record SIGINT/SIGTERM so the loop can finish its step and save; a second signal kills."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _SignalFlag:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, _frame: object) -> None:
        self.signum = signum
        for sig, handler in self._previous.items():  # a second signal acts at once
            signal.signal(sig, handler)

    def __exit__(self, *_exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


log = logging.getLogger(__name__)  # what a run says; the CLI prints it and keeps it in logs/train.log
PLAIN_PROGRESS_SECONDS = 30.0  # at most one progress line this often when output is not a terminal


def _step_seed(seed: int, rank: int, step: int) -> int:
    """A seed for one step's binarisation noise, so that no generator state needs saving."""
    return (seed * 1_000_003 + rank * 7_919 + step) % 2**63


def _with_absolute_paths(config: Config) -> Config:
    """Data paths as absolute paths, so the run's saved config works from any directory."""
    data = config.data
    root = str(Path(data.root).expanduser().resolve()) if data.root else None
    path = str(Path(data.path).expanduser().resolve()) if data.path else None
    return dataclasses.replace(config, data=dataclasses.replace(data, root=root, path=path))


@contextmanager
def _flush_denormal() -> Iterator[None]:
    """Masked weights under weight decay drift into denormals, which x86 runs several times slower."""
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)  # leave the process as we found it


def _all_finite(module: torch.nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in module.parameters())


@dataclass
class TrainingState:
    """Where a run stands: saved in every checkpoint (as top-level keys) and restored as a whole."""

    epoch: int = 1  # the position of the next batch: epoch, batch in it, steps so far
    batch: int = 0
    step: int = 0
    loss_sum: float = 0.0  # training loss summed over this epoch's rows so far
    best_valid_nll: float = math.inf
    best_epoch: int = 0
    epochs_since_best: int = 0
    metrics: list[dict[str, Any]] = field(default_factory=list)
    finished: bool = False

    @classmethod
    def from_checkpoint(cls, state: dict[str, Any]) -> TrainingState:
        return cls(**{f.name: state[f.name] for f in dataclasses.fields(cls)})


class Trainer:
    """One training run: everything needed to stop at any batch and resume it exactly.

    The checkpoint holds the model, optimiser, RNG states, the epoch and the batch position in
    it, the early-stopping state and the metrics so far; the mask cursor of an ensemble is the
    step modulo K. Resuming replays nothing and skips nothing, so a resumed run ends with the
    same metrics as an uninterrupted one.
    """

    def __init__(
        self,
        config: Config,
        run_dir: Path,
        device: torch.device | str = "cpu",
        console: Console | None = None,
        group: Dist = SINGLE,
        recorded_root: str | None = None,
        command: str | None = None,
        overrides: list[str] | None = None,
        recorded_table: dict[str, Any] | None = None,
    ) -> None:
        config = _with_absolute_paths(config)
        self.group, self.command, self.overrides = group, command, list(overrides or [])
        self.config, self.run_dir, self.console = config, run_dir, console
        self.device = torch.device(device)
        torch.manual_seed(config.seed)
        if not group.main:
            group.barrier()  # rank 0 downloads the data first; the others then read it
        self.dataset: Dataset = load_dataset(config.data, recorded_root, recorded_table)
        if group.main:
            group.barrier()
        self.kind = kind_of(config.model.kind)
        d = self.dataset
        self.model = build_model(
            config, d.features, d.classes, columns=d.columns, context=d.context_features
        ).to(self.device)
        gaps = sum(int(torch.isnan(d.split(name)).any(1).sum()) for name in ("train", "valid", "test"))
        if gaps and not getattr(self.model, "takes_missing_cells", False):
            raise UsageError(
                f"model.kind: {config.model.kind} cannot train on the {gaps} rows with missing cells (a "
                "MADE with a hidden layer can); set data.missing: drop to leave them out"
            )
        self._agree_on_degrees()
        self.model.fit_inputs(d.train.to(self.device), d.split_condition("train").to(self.device))
        self.optimizer = make_optimizer(self.model, config.train.lr, config.train.weight_decay)
        # Epoch e's order is a function of (seed, e): a half-done epoch is redrawn exactly.
        self.sampler = DistributedSampler(
            range(self.dataset.train.shape[0]), num_replicas=group.world, rank=group.rank,
            shuffle=True, seed=config.seed, drop_last=True,
        )  # fmt: skip
        # A step's noise (dynamic binarisation, a VAE's posterior draws) comes from this
        # generator, reseeded per step from (seed, rank, step): no state to save for resuming.
        self.noise = torch.Generator()
        self.state = TrainingState()
        self._board: Any = None  # TensorBoard's writer, once the first numbers are saved (train.tensorboard)
        if config.train.tensorboard:  # every rank: all refuse together, before any epoch
            try:
                importlib.import_module("torch.utils.tensorboard")
            except ImportError:
                needs = "needs the tensorboard package: pip install 'made-cli[tensorboard]'"
                raise UsageError(f"train.tensorboard: true {needs}") from None

    # -- state -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        d = self.dataset
        return {
            "format_version": CHECKPOINT_FORMAT,
            "config": config_to_dict(self.config),
            "features": d.features,
            "classes": d.classes,
            "image_shape": list(d.image_shape) if d.image_shape else None,
            "column_levels": list(d.column_levels) if d.column_levels is not None else None,
            "column_laws": None if d.columns is None else [law.to_dict() for law in d.columns],
            "context_features": d.context_features,
            "table": table_record(d),  # a table's schema and split, applied as they are from now on
            "model": self.model.state_dict(),
            "optimizer": portable_optimizer_state(self.model, self.optimizer),  # whole matrices
            **dataclasses.asdict(self.state),
            "rng_torch": torch.get_rng_state(),
            "world_size": self.group.world,
            "data_root": self.dataset.root,  # where the data was read: kept with the run
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        d = self.dataset
        classes = state.get("classes", 0) if self.model.classes else 0
        check_data(d.features, d.classes, state["features"], classes, "the checkpoint")
        if state["batch"] and state["world_size"] != self.group.world:
            raise UsageError(
                f"this run stopped mid-epoch with {state['world_size']} process(es); resume it "
                f"with the same number (now {self.group.world}), or from an epoch boundary"
            )
        restore_model(self.model, state, self.run_dir / "checkpoints" / "last.pt")
        # Made anew for the loaded model's parameters: a checkpoint whose degrees differ from
        # today's draw for the seed gives some layers other degree blocks, hence new parameters.
        self.optimizer = make_optimizer(self.model, self.config.train.lr, self.config.train.weight_decay)
        load_portable_optimizer_state(self.model, self.optimizer, state["optimizer"], state["model"])
        for group in self.optimizer.param_groups:  # the config may have changed them on resume
            group["lr"], group["weight_decay"] = self.config.train.lr, self.config.train.weight_decay
        self.state = TrainingState.from_checkpoint(state)
        torch.set_rng_state(state["rng_torch"].cpu())

    def _save(self, *, best: bool) -> None:
        if not self.group.main:
            return
        blob = checkpoint_bytes(self.state_dict())
        # best.pt before last.pt: a kill between the two leaves last.pt older, and the resumed
        # run replays the epoch and finds the same improvement again.
        if best:
            atomic_write_bytes(self.run_dir / "checkpoints" / "best.pt", blob)
        atomic_write_bytes(self.run_dir / "checkpoints" / "last.pt", blob)
        lines = "".join(json.dumps(m) + "\n" for m in self.state.metrics)
        atomic_write_text(self.run_dir / "metrics.jsonl", lines)
        self._to_tensorboard()

    def _to_tensorboard(self) -> None:
        """metrics.jsonl's numbers as TensorBoard scalars at the record's epoch: "<split>/<key>"
        ("valid/nll", "test/nll", "valid/lr"), and the training loss as "train/<key>".

        Each time a run is trained or resumed the writer starts afresh: it removes the event
        files an earlier writer left (an epoch a kill cut short, the test line of a run reopened
        for more epochs) and writes every record again, so the scalars are always those of the
        saved checkpoint's metrics.
        """
        if not self.config.train.tensorboard or not self.group.main:
            return
        from torch.utils.tensorboard import SummaryWriter

        if self._board is None:
            folder = self.run_dir / "tensorboard"
            for old in folder.glob("events.out.tfevents.*"):
                old.unlink()
            self._board = SummaryWriter(log_dir=str(folder))
            self._board_written = 0
        for record in self.state.metrics[self._board_written :]:
            numbers = {
                k: v for k, v in record.items()
                if k not in ("step", "epoch") and isinstance(v, (int, float)) and not isinstance(v, bool)
            }  # fmt: skip
            for key, value in numbers.items():
                tag = f"train/{key}" if key == self.kind.loss_name else f"{record['split']}/{key}"
                self._board.add_scalar(tag, value, record["epoch"])
        self._board.flush()
        self._board_written = len(self.state.metrics)

    # -- the loop ------------------------------------------------------------------------------
    def _log_start(self) -> None:
        cfg, d, model = self.config, self.dataset, self.model
        log.info(f"run directory: {self.run_dir}")
        baseline = independent_baseline_nll(d.split("train"), d.valid, model.head)
        log.info(
            f"data: {cfg.data.name} ({d.values}), {d.train.shape[0]}/{d.valid.shape[0]}/"
            f"{d.test.shape[0]} rows of {d.features} dimensions; independent "
            f"{model.head.baseline().describe()} "
            f"baseline {baseline:.2f} nats on valid"
        )
        if d.table_schema is not None:
            log.info("columns:\n" + "\n".join(d.table_schema.column_lines()))
            assert d.split_codes is not None
            dropped = int((d.split_codes == DROPPED).sum())
            gaps = int(torch.isnan(d.train).any(1).sum())
            if dropped:
                log.info(f"dropped {dropped} rows with missing cells (data.missing: drop)")
            if gaps:
                cells = int(torch.isnan(d.train).sum())
                log.info(f"{gaps} training rows have missing cells ({cells} cells): each trains on "
                         "its observed cells, log p(observed cells | which are missing)")  # fmt: skip
        whole, stored = parameter_counts(model)
        in_blocks = f" ({stored:,} stored in degree blocks)" if stored != whole else ""
        log.info(f"model: {self.kind.describe(cfg, model)}, {whole:,} parameters{in_blocks}")

    def _signalled(self, flag: _SignalFlag) -> int | None:
        """The signal to stop for, agreed by all ranks (any rank's signal stops them all)."""
        if self.group.world == 1:
            return flag.signum
        got = int(self.group.max(float(flag.signum or 0), self.device))
        return got or None

    def _agree_on_degrees(self) -> None:
        """Every rank takes rank 0's degrees (identical masks and degree blocks), before any
        optimiser holds the parameters that a change of blocks would replace."""
        if self.group.world == 1:
            return
        for net in self.model.made_nets():
            for degrees in net.degree_buffers():
                self.group.broadcast_tensor(degrees)
            net.reload_masks()

    def _wrapped(self) -> torch.nn.Module:
        """The module the step calls: the model, or its DDP wrapper."""
        if self.group.world == 1:
            return self.model
        # Ranks agreed on the degrees (and loaded the same checkpoint) and masks follow from
        # them: no buffer sync per step.
        if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters:
            return DistributedDataParallel(self.model, forward_sync_buffers=False)
        return DistributedDataParallel(self.model, broadcast_buffers=False)

    def _share_buffers(self) -> None:
        """Rank 0's saved buffers on every rank before validation and saving: a flow's batch-norm
        statistics follow each rank's own batches (DDP syncs no buffers here), and the ranks must
        validate, and rank 0 save, one model."""
        if self.group.world == 1:
            return
        saved = self.model.state_dict(keep_vars=True)
        for name, buffer in self.model.named_buffers():
            if name in saved:
                self.group.broadcast_tensor(buffer)

    def _stop_for_signal(self, signum: int) -> None:
        if not _all_finite(self.model):  # never save a diverged model, even when asked to stop
            raise self._diverged("the parameters became NaN or infinite")
        self._save(best=False)
        name = signal.Signals(signum).name
        raise Interrupted(
            f"{name}: saved epoch {self.state.epoch} at batch {self.state.batch} to "
            f"{self.run_dir / 'checkpoints' / 'last.pt'}; resume with: "
            f"made train --resume {self.run_dir}",
            signum,
        )

    def _diverged(self, what: str) -> MadeError:
        last = self.run_dir / "checkpoints" / "last.pt"
        kept = f"the last good checkpoint is {last}" if last.exists() else "no checkpoint was saved yet"
        return MadeError(
            f"{what} at epoch {self.state.epoch}, step {self.state.step}; stopped, {kept}; lower train.lr "
            f"(now {self.config.train.lr:g}) or add train.weight_decay"
        )

    def run(self) -> TrainResult:
        """Train to the end (epochs or early stopping), then evaluate the best checkpoint."""
        cfg, model, device, group = self.config.train, self.model, self.device, self.group
        st = self.state  # updated in place, never replaced, while the run goes on
        if group.main:
            (self.run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
            remove_stale_temps(self.run_dir)
            write_config(self.run_dir, self.config)
            if (
                self.dataset.split_codes is not None
            ):  # the table's split, for the user (the checkpoint keeps it)
                buffer = io.BytesIO()
                np.save(buffer, self.dataset.split_codes)
                atomic_write_bytes(self.run_dir / "split.npy", buffer.getvalue())
            if self.dataset.table_schema is not None:  # the columns and their laws, for made runs --long
                schema = json.dumps(self.dataset.table_schema.to_dict(), indent=1, default=str)
                atomic_write_text(self.run_dir / SCHEMA_FILE, schema + "\n")
            record_invocation(
                self.run_dir, self.command, self.overrides, self.device, group.world, self.dataset.root
            )
            self._log_start()
            if st.finished:  # resumed with nothing to train: keep the settings it was given
                self._save(best=False)
            else:
                self._to_tensorboard()  # what the run has so far
        step_module = self._wrapped()
        train_x = self.dataset.train.to(device)
        train_given = condition_for(model, self.dataset.split_condition("train")).to(device)
        n, bs = len(self.sampler), cfg.batch_size  # this rank's rows per epoch
        n_batches = self._steps_per_epoch()
        start = time.perf_counter() - (st.metrics[-1]["seconds"] if st.metrics else 0.0)
        # Where no bar can show (a log, CI, a pipe), a plain line now and then says how it goes.
        terminal = (self.console or Console()).file.isatty()  # not FORCE_COLOR's word
        plain = group.main and not terminal
        progress = Progress(
            TextColumn("epoch {task.fields[epoch]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
            disable=not group.main or not terminal,
        )
        last_line = time.perf_counter()
        with progress, _SignalFlag() as flag, _flush_denormal(), tf32(device.type == "cuda"):
            while not st.finished and st.epoch <= cfg.epochs and st.epochs_since_best < cfg.patience:
                self.sampler.set_epoch(st.epoch)
                order = torch.tensor(list(self.sampler), device=device)
                task = progress.add_task("train", total=n_batches, epoch=st.epoch, loss="-")
                progress.advance(task, st.batch)
                model.train()
                while st.batch < n_batches:
                    if (signum := self._signalled(flag)) is not None:
                        self._stop_for_signal(signum)
                    rows = order[st.batch * bs : (st.batch + 1) * bs]
                    x, given = train_x[rows], train_given.rows(rows)
                    self.noise.manual_seed(_step_seed(self.config.seed, group.rank, st.step))
                    if self.dataset.dynamic:
                        x = (torch.rand(x.shape, generator=self.noise).to(device) < x).float()
                    loss_value = train_step(
                        step_module, self.optimizer, x, st.step, n_batches, group, given, self.noise
                    )
                    if not math.isfinite(loss_value):
                        raise self._diverged(f"the training loss became {loss_value}")
                    st.loss_sum += loss_value * x.shape[0]
                    st.step += 1
                    st.batch += 1
                    running = f"{st.loss_sum / min(st.batch * bs, n):.2f}"
                    progress.update(task, advance=1, loss=running)
                    if plain and time.perf_counter() - last_line >= PLAIN_PROGRESS_SECONDS:
                        last_line = time.perf_counter()
                        log.info(
                            f"epoch {st.epoch:3d}  batch {st.batch}/{n_batches}  running train "
                            f"loss {running}  ({last_line - start:.0f}s in all)"
                        )
                progress.remove_task(task)
                self._end_epoch(n, time.perf_counter() - start)
                if (signum := self._signalled(flag)) is not None:
                    self._stop_for_signal(signum)
        if st.epochs_since_best >= cfg.patience and not st.finished:
            measure, waited = self.kind.measure, st.epochs_since_best
            log.info(f"early stop: no better validation {measure} for {waited} epochs")
        group.barrier()  # rank 0's last checkpoint is on disk before anyone reads best.pt
        return self._finish(time.perf_counter() - start)

    def _steps_per_epoch(self) -> int:
        """Batches in this rank's epoch (the last may be short)."""
        return math.ceil(len(self.sampler) / self.config.train.batch_size)

    def _end_epoch(self, n: int, seconds: float) -> None:
        if not _all_finite(self.model):
            raise self._diverged("the parameters became NaN or infinite")
        self._share_buffers()
        valid = self._evaluate(self.model, "valid")
        valid_nll = valid["nll"]
        if not math.isfinite(valid_nll):
            raise self._diverged(f"the validation NLL became {valid_nll}")
        improved = valid_nll < self.state.best_valid_nll
        last = (self.state.step - 1, self._steps_per_epoch())  # the epoch's last step
        if improved:
            self.state.best_valid_nll, self.state.best_epoch = valid_nll, self.state.epoch
            self.state.epochs_since_best = 0
        elif self.model.patience_counts(*last):  # not while a VAE still warms its KL weight up
            self.state.epochs_since_best += 1
        train_loss = self.state.loss_sum / n
        terms = self.model.schedule_terms(*last)
        self.state.metrics.append({
            "step": self.state.step, "epoch": self.state.epoch, "split": "valid", **valid,
            self.kind.loss_name: train_loss,
            "lr": self.config.train.lr, "seconds": round(seconds, 3),
            "estimator": self.model.estimator, **terms,
        })  # fmt: skip
        shown = self.model.epoch_line(train_loss, valid, terms)
        took = seconds - (self.state.metrics[-2]["seconds"] if len(self.state.metrics) > 1 else 0.0)
        log.info(
            f"epoch {self.state.epoch:3d}  {shown}{'  *' if improved else ''}  "
            f"({took:.1f}s this epoch, {seconds:.0f}s in all)"
        )
        self.state.epoch, self.state.batch, self.state.loss_sum = self.state.epoch + 1, 0, 0.0
        self._save(best=improved)

    def _evaluate(self, model: DensityModel, split: str) -> dict[str, Any]:
        """``validation_terms`` of ``model`` on a split (``nll`` in nats, ``bpd``), agreed across ranks."""
        d = self.dataset
        terms = evaluate_terms(
            model, d.split(split), self.config.train.eval_batch_size, self.group, d.split_condition(split)
        )
        nll = terms.pop("nll")
        return {"nll": nll, "bpd": d.bits_per_dim(nll, split), **terms}

    def _finish(self, seconds: float) -> TrainResult:
        best_path = self.run_dir / "checkpoints" / "best.pt"
        best_state = load_checkpoint(best_path, map_location=self.device)
        _, model = model_from_checkpoint(best_state, best_path, self.device)
        valid = self._evaluate(model, "valid")
        test = self._evaluate(model, "test")
        if not self.state.finished:
            self.state.metrics.append({
                "step": best_state["step"], "epoch": self.state.best_epoch, "split": "test", **test,
                "lr": self.config.train.lr, "seconds": round(seconds, 3),
                "estimator": model.estimator,
            })  # fmt: skip
            self.state.finished = True
            self._save(best=False)
        if self._board is not None:
            self._board.close()
            self._board = None
        return TrainResult(
            run_dir=self.run_dir,
            best_epoch=self.state.best_epoch,
            epochs_run=self.state.epoch - 1,
            valid_nll=valid["nll"],
            test_nll=test["nll"],
            valid_bpd=valid["bpd"],
            test_bpd=test["bpd"],
            estimator=model.estimator,
            seconds=seconds,
            measure=self.kind.measure,
        )


def train(
    config: Config,
    run_dir: Path | None = None,
    device: torch.device | str = "cpu",
    console: Console | None = None,
    group: Dist = SINGLE,
    command: str | None = None,
    overrides: list[str] | None = None,
) -> TrainResult:
    """Train the model of ``config`` into a new run directory; return its validation and test NLL.

    In a process group, rank 0's run directory is used and only rank 0 writes to it.
    ``command`` and ``overrides`` (as typed) are recorded in the run's run.json.
    """
    if group.main:
        run_dir = run_dir or new_run_dir(config.name)
    run_dir = Path(str(group.broadcast(str(run_dir) if group.main else None, torch.device(device))))
    return Trainer(config, run_dir, device, console, group, command=command, overrides=overrides).run()


_RESUMABLE = {
    "train.epochs", "train.patience", "train.lr", "train.weight_decay", "train.eval_batch_size",
    "train.tensorboard",
}  # fmt: skip


def resume(
    run_dir: Path,
    overrides: list[str] | None = None,
    device: torch.device | str = "cpu",
    console: Console | None = None,
    group: Dist = SINGLE,
    command: str | None = None,
) -> TrainResult:
    """Continue a run from its last checkpoint; only ``train.*`` settings may be overridden.

    ``command`` (as typed) is recorded in the run's run.json with the overrides."""
    # on the CPU: RNG states must stay there; load_state_dict moves the rest to the device
    state = load_checkpoint(run_dir / "checkpoints" / "last.pt", map_location="cpu")
    overrides = overrides or []
    for override in overrides:
        if override.partition("=")[0] not in _RESUMABLE:
            raise UsageError(
                f"cannot change {override.partition('=')[0]} when resuming; "
                f"these can change: {', '.join(sorted(_RESUMABLE))}"
            )
    config = saved_config(state["config"], overrides)
    reached = state["epoch"] - (0 if state["batch"] else 1)  # the last epoch begun
    if config.train.epochs < reached:
        raise UsageError(
            f"train.epochs={config.train.epochs} is below epoch {reached}, which {run_dir} has "
            f"already reached; give train.epochs={reached} or more"
        )
    old = state["config"]["train"]
    if state["finished"] and (config.train.epochs > old["epochs"] or config.train.patience > old["patience"]):
        state["finished"] = False  # asked for more: reopen a finished run
        state["metrics"] = [m for m in state["metrics"] if m["split"] != "test"]
    trainer = Trainer(
        config, run_dir, device, console, group, recorded_root=recorded_root(state), command=command,
        overrides=overrides, recorded_table=recorded_table(state),
    )  # fmt: skip
    trainer.load_state_dict(state)
    log.info(f"resuming {run_dir} at epoch {trainer.state.epoch}, batch {trainer.state.batch}")
    return trainer.run()
