"""The work behind each command after `train`: it computes and writes the run's files; cli.py prints."""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .config import check_seed, load_config
from .data import dataset_features, load_dataset
from .errors import UsageError
from .models import build_model
from .runs import Run, atomic_write_bytes, atomic_write_text, find_runs
from .train import bits_per_dim, evaluate_nll
from .verify import MemberReport, verify_made

__all__ = [
    "CompletionResult",
    "complete_run",
    "evaluate_run",
    "list_runs",
    "sample_run",
    "top_half",
    "verify_target",
]


def _save_npy(path: Path, array: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, array)
    atomic_write_bytes(path, buffer.getvalue())


def _save_png(path: Path, images: torch.Tensor, nrow: int) -> None:
    """A grid of (N, H, W) images in [0, 1], written atomically."""
    from torchvision.utils import make_grid, save_image

    grid = make_grid(images[:, None].float().cpu(), nrow=nrow, padding=2, pad_value=1.0)
    buffer = io.BytesIO()
    save_image(grid, buffer, format="png")
    atomic_write_bytes(path, buffer.getvalue())


def _check_features(run: Run, features: int) -> None:
    if features != run.model.features:
        raise UsageError(
            f"the data has {features} dimensions but the model in {run.dir} was trained on "
            f"{run.model.features}"
        )


def evaluate_run(run: Run, split: str, batch_size: int = 1000) -> dict[str, Any]:
    """NLL on a split of the run's dataset; also recorded in <run>/evaluate.json by split."""
    dataset = load_dataset(run.config.data)
    _check_features(run, dataset.features)
    x = dataset.split(split)
    nll = evaluate_nll(run.model, x, batch_size)
    report = {
        "run": str(run.dir),
        "split": split,
        "examples": int(x.shape[0]),
        "nll_nats": nll,
        "bits_per_dim": bits_per_dim(nll, run.model.features),
        "estimator": run.model.estimator,
    }
    path = run.dir / "evaluate.json"
    try:
        previous = json.loads(path.read_text()) if path.exists() else {}
    except json.JSONDecodeError:
        previous = {}
    atomic_write_text(path, json.dumps({**previous, split: report}, indent=2) + "\n")
    return report


def sample_run(run: Run, n: int, seed: int) -> dict[str, Path]:
    """Draw ``n`` exact samples; write samples/seed<S>-n<N>.npy and a PNG grid for image data."""
    if n < 1:
        raise UsageError(f"--n must be at least 1 (got {n})")
    check_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    x = run.model.sample(n, generator=generator).cpu()
    out = {"npy": run.dir / "samples" / f"seed{seed}-n{n}.npy"}
    _save_npy(out["npy"], x.numpy().astype(np.uint8))
    if run.image_shape:
        out["png"] = out["npy"].with_suffix(".png")
        _save_png(out["png"], x.view(n, *run.image_shape), nrow=math.ceil(math.sqrt(n)))
    return out


def top_half(features: int, image_shape: tuple[int, int] | None) -> torch.Tensor:
    """Observed mask (D,) of the top half of an image (rows), or the first half of the dims."""
    observed = torch.zeros(features, dtype=torch.bool)
    if image_shape:
        h, w = image_shape
        observed[: (h // 2) * w] = True
    else:
        observed[: features // 2] = True
    return observed


@dataclass(frozen=True)
class CompletionResult:
    paths: dict[str, Path]
    indices: list[int]
    conditional_nll: float  # mean -log p(missing | observed) in nats; NaN if not exact
    missing: int  # dimensions sampled per image
    exact: bool


def complete_run(run: Run, n: int, per_image: int, seed: int) -> CompletionResult:
    """Complete ``n`` random test images from their top half, ``per_image`` times each."""
    if n < 1 or per_image < 1:
        raise UsageError("--n and --per-image must be at least 1")
    check_seed(seed)
    dataset = load_dataset(run.config.data)
    _check_features(run, dataset.features)
    test = dataset.test
    generator = torch.Generator().manual_seed(seed)
    # The test file is sorted by digit: pick at random, never the first n.
    indices = torch.randperm(test.shape[0], generator=generator)[: min(n, test.shape[0])]
    originals = test[indices].to(run.model.net.ranks.device)  # (n, D)
    observed = top_half(run.model.features, run.image_shape).to(originals.device).expand_as(originals)
    repeated = originals.repeat_interleave(per_image, 0)
    completed, exact = run.model.complete(
        repeated, observed.repeat_interleave(per_image, 0), generator=generator
    )
    cond = run.model.conditional_log_prob(originals, observed)
    k = len(indices)
    d = run.model.features
    completions = completed.view(k, per_image, d).cpu()
    stem = run.dir / "completions" / f"seed{seed}-n{k}"
    paths = {"npz": stem.with_suffix(".npz")}
    buffer = io.BytesIO()
    np.savez(
        buffer,
        indices=indices.numpy(),
        originals=originals.cpu().numpy().astype(np.uint8),
        observed=observed.cpu().numpy(),
        completions=completions.numpy().astype(np.uint8),
    )
    atomic_write_bytes(paths["npz"], buffer.getvalue())
    if run.image_shape:
        shown_observed = torch.where(observed, originals, 0.35).cpu()  # missing pixels in grey
        rows = torch.cat([originals.cpu()[:, None], shown_observed[:, None], completions], 1)
        paths["png"] = stem.with_suffix(".png")
        _save_png(paths["png"], rows.view(-1, *run.image_shape), nrow=2 + per_image)
    return CompletionResult(
        paths=paths,
        indices=indices.tolist(),
        conditional_nll=float(-cond.mean()),
        missing=int((~observed[0]).sum()),
        exact=bool(exact.all()),
    )


def verify_target(target: Path | None, points: int) -> tuple[str, list[MemberReport]]:
    """Verify a run's model, or a freshly built model for a config file; returns (what, reports)."""
    from .runs import load_run

    if target is not None and target.suffix in (".yaml", ".yml"):
        cfg = load_config(target)
        model = build_model(cfg, dataset_features(cfg.data))
        what = f"config {target} (untrained)"
        run_dir = None
    else:
        run = load_run(target)
        model, what, run_dir = run.model, f"run {run.dir}", run.dir
    reports = verify_made(model.net, points=points)
    if run_dir is not None:
        payload = {"ok": all(r.ok for r in reports), "members": [r.to_dict() for r in reports]}
        atomic_write_text(run_dir / "verify-ar.json", json.dumps(payload, indent=2) + "\n")
    return what, reports


def list_runs(parent: Path) -> list[dict[str, Any]]:
    """One summary per run under ``parent``: dataset, model, epochs, best valid and test NLL."""
    import yaml

    rows = []
    for run_dir in find_runs(parent):
        try:
            cfg = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
        except yaml.YAMLError:
            cfg = {}
        valid, test, epochs = math.inf, None, 0
        metrics = run_dir / "metrics.jsonl"
        try:
            records = [json.loads(line) for line in metrics.read_text().splitlines()]
        except (OSError, json.JSONDecodeError):  # none yet, or unreadable: show the run without
            records = []
        for m in records:
            if isinstance(m, dict):
                if m.get("split") == "valid":
                    valid, epochs = min(valid, m["nll"]), max(epochs, m["epoch"])
                elif m.get("split") == "test":
                    test = m["nll"]
        rows.append({
            "run": str(run_dir),
            "data": (cfg.get("data") or {}).get("name", "?"),
            "hidden": (cfg.get("model") or {}).get("hidden", "?"),
            "masks": (cfg.get("model") or {}).get("num_masks", 1),
            "epochs": epochs,
            "best_valid_nll": None if math.isinf(valid) else valid,
            "test_nll": test,
        })  # fmt: skip
    return rows
