"""The training loop (Adam, masks cycled per step, early stopping) and NLL evaluation."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from .config import Config, config_to_dict
from .data import Dataset, load_dataset
from .errors import UsageError
from .models import MADEModel, build_model
from .runs import (
    CHECKPOINT_FORMAT,
    append_jsonl,
    atomic_write_bytes,
    checkpoint_bytes,
    load_checkpoint,
    new_run_dir,
    write_config,
)

__all__ = [
    "TrainResult",
    "bits_per_dim",
    "evaluate_nll",
    "independent_baseline_nll",
    "resolve_device",
    "train",
]


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    best_epoch: int
    epochs_run: int
    valid_nll: float
    test_nll: float
    features: int
    estimator: str
    seconds: float


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; asking for CUDA without it is a usage error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for, but no CUDA device is available")
    if name not in ("cpu", "cuda"):
        raise UsageError(f"--device must be auto, cpu or cuda (got {name!r})")
    return torch.device(name)


def bits_per_dim(nll_nats: float, features: int) -> float:
    return nll_nats / (features * math.log(2))


@torch.no_grad()
def evaluate_nll(model: MADEModel, x: torch.Tensor, batch_size: int = 1000) -> float:
    """Mean negative log-likelihood in nats per example, with the model's full estimator."""
    was_training = model.training
    model.eval()
    device = model.net.ranks.device
    total = 0.0
    for i in range(0, x.shape[0], batch_size):
        total += float(-model.log_prob(x[i : i + batch_size].to(device)).sum())
    model.train(was_training)
    return total / x.shape[0]


def independent_baseline_nll(train: torch.Tensor, test: torch.Tensor) -> float:
    """NLL of independent Bernoullis fitted to the training marginals: the bar any MADE must beat."""
    p = train.mean(0).clamp(1e-4, 1 - 1e-4)
    logp = test @ p.log() + (1 - test) @ (1 - p).log()
    return float(-logp.mean())


def _init_output_bias(model: MADEModel, train: torch.Tensor) -> None:
    """Start from the independent-Bernoulli fit: output biases at the marginal logits."""
    p = train.mean(0).clamp(1e-4, 1 - 1e-4)
    with torch.no_grad():
        model.net.output.bias.copy_(torch.logit(p).to(model.net.output.bias))


def train(
    config: Config,
    run_dir: Path | None = None,
    device: torch.device | str = "cpu",
    say: Callable[[str], None] = print,
    console: Console | None = None,
) -> TrainResult:
    """Train the model of ``config`` into a run directory; return its validation and test NLL."""
    device = torch.device(device)
    torch.set_flush_denormal(True)  # masked weights under decay go denormal and run slowly
    torch.manual_seed(config.seed)
    dataset: Dataset = load_dataset(config.data)
    model = build_model(config, dataset.features).to(device)
    _init_output_bias(model, dataset.train)
    optimizer = torch.optim.Adam(
        model.parameters(), lr=config.train.lr, weight_decay=config.train.weight_decay
    )
    if run_dir is None:
        run_dir = new_run_dir(config.name)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_config(run_dir, config)
    (run_dir / "checkpoints").mkdir(exist_ok=True)
    metrics_path = run_dir / "metrics.jsonl"

    d = dataset.features
    say(f"run directory: {run_dir}")
    say(
        f"data: {config.data.name}, {dataset.train.shape[0]}/{dataset.valid.shape[0]}/"
        f"{dataset.test.shape[0]} rows of {d} dimensions; independent-Bernoulli baseline "
        f"{independent_baseline_nll(dataset.train, dataset.valid):.2f} nats on valid"
    )
    n_params = sum(p.numel() for p in model.parameters())
    say(
        f"model: MADE hidden={list(config.model.hidden)} masks={model.num_masks} "
        f"direct={config.model.direct} ordering={config.model.ordering}, {n_params:,} parameters"
    )

    train_x = dataset.train.to(device)
    n = train_x.shape[0]
    bs = config.train.batch_size
    shuffle = torch.Generator().manual_seed(config.seed)
    binarize = torch.Generator().manual_seed(config.seed + 1)
    step, best, best_epoch, since_best, epoch = 0, math.inf, 0, 0, 0
    start = time.perf_counter()
    progress = Progress(
        TextColumn("epoch {task.fields[epoch]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )
    with progress:
        for epoch in range(1, config.train.epochs + 1):
            task = progress.add_task("train", total=math.ceil(n / bs), epoch=epoch)
            model.train()
            order = torch.randperm(n, generator=shuffle).to(device)
            loss_sum = torch.zeros((), device=device)
            for i in range(0, n, bs):
                x = train_x[order[i : i + bs]]
                if dataset.dynamic:
                    x = (torch.rand(x.shape, generator=binarize).to(device) < x).float()
                loss = -model.log_prob_member(x, step % model.num_masks).mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                loss_sum += loss.detach() * x.shape[0]
                step += 1
                progress.advance(task)
            progress.remove_task(task)
            train_nll = float(loss_sum) / n
            valid_nll = evaluate_nll(model, dataset.valid, config.train.eval_batch_size)
            if not math.isfinite(valid_nll):
                raise UsageError(f"validation NLL became {valid_nll} at epoch {epoch}; lower train.lr")
            improved = valid_nll < best
            if improved:
                best, best_epoch, since_best = valid_nll, epoch, 0
            else:
                since_best += 1
            seconds = time.perf_counter() - start
            append_jsonl(metrics_path, {
                "step": step, "epoch": epoch, "split": "valid", "nll": valid_nll,
                "bpd": bits_per_dim(valid_nll, d), "train_nll": train_nll,
                "lr": config.train.lr, "seconds": round(seconds, 3),
                "estimator": model.estimator,
            })  # fmt: skip
            state = {
                "format_version": CHECKPOINT_FORMAT,
                "config": config_to_dict(config),
                "features": d,
                "image_shape": list(dataset.image_shape) if dataset.image_shape else None,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "epoch": epoch,
                "step": step,
                "best_valid_nll": best,
                "best_epoch": best_epoch,
                "epochs_since_best": since_best,
                "rng_torch": torch.get_rng_state(),
                "rng_shuffle": shuffle.get_state(),
                "rng_binarize": binarize.get_state(),
            }
            blob = checkpoint_bytes(state)
            atomic_write_bytes(run_dir / "checkpoints" / "last.pt", blob)
            if improved:
                atomic_write_bytes(run_dir / "checkpoints" / "best.pt", blob)
            say(
                f"epoch {epoch:3d}  train {train_nll:7.2f}  valid {valid_nll:7.2f} nats"
                f"{'  *' if improved else ''}  ({seconds:.0f}s)"
            )
            if since_best >= config.train.patience:
                say(f"early stop: no better validation NLL for {since_best} epochs")
                break

    best_state = load_checkpoint(run_dir / "checkpoints" / "best.pt", map_location=device)
    model.load_state_dict(best_state["model"])
    valid_nll = evaluate_nll(model, dataset.valid, config.train.eval_batch_size)
    test_nll = evaluate_nll(model, dataset.test, config.train.eval_batch_size)
    seconds = time.perf_counter() - start
    append_jsonl(metrics_path, {
        "step": best_state["step"], "epoch": best_epoch, "split": "test", "nll": test_nll,
        "bpd": bits_per_dim(test_nll, d), "lr": config.train.lr, "seconds": round(seconds, 3),
        "estimator": model.estimator,
    })  # fmt: skip
    return TrainResult(
        run_dir=run_dir,
        best_epoch=best_epoch,
        epochs_run=epoch,
        valid_nll=valid_nll,
        test_nll=test_nll,
        features=d,
        estimator=model.estimator,
        seconds=seconds,
    )
