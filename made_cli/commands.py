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

from .checkpoint import check_data, load_checkpoint, recorded_root
from .config import check_seed, load_config
from .data import Dataset, dataset_classes, dataset_features, display_values, load_dataset
from .errors import BadArgument, UsageError
from .interface import EXACT, SUB_ENSEMBLE, DensityModel, Progress, Verification
from .kinds import KINDS, build_model, kind_of
from .pictures import rows_by_class, save_png
from .runs import Run, atomic_write_bytes, atomic_write_text, find_runs, read_record

__all__ = [
    "OBSERVED_MASKS",
    "CompletionResult",
    "complete_run",
    "density_panels",
    "evaluate_run",
    "list_runs",
    "observed_mask",
    "sample_labels",
    "sample_run",
    "verify_target",
]


def _save_npy(path: Path, array: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, array)
    atomic_write_bytes(path, buffer.getvalue())


def _load_data(run: Run) -> Dataset:
    """The run's dataset, checked against what the model was trained on."""
    dataset = load_dataset(run.config.data, recorded_root(run.checkpoint))
    model = run.model
    check_data(dataset.features, dataset.classes, model.features, model.classes, f"the model in {run.dir}")
    return dataset


def evaluate_run(
    run: Run,
    split: str,
    batch_size: int | None = None,
    samples: int | None = None,
    seed: int | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """NLL on a split of the run's dataset; also recorded in <run>/evaluate.json by split.

    A VAE's NLL is the importance-weighted estimate with ``samples`` draws per image (default:
    the config's iaf.importance_samples), its ELBO from the same draws; ``seed`` fixes them.
    ``batch_size``: rows a pass (default: the config's train.eval_batch_size).
    """
    batch_size = run.config.train.eval_batch_size if batch_size is None else batch_size
    dataset = _load_data(run)
    x = dataset.split(split)
    report: dict[str, Any] = {"run": str(run.dir), "split": split, "examples": int(x.shape[0])}
    report.update(run.model.evaluate(x, dataset.split_labels(split), batch_size, samples, seed, progress))
    report["bits_per_dim"] = dataset.bits_per_dim(report["nll_nats"], split)
    report["values"] = dataset.values
    if "marginal_nll_nats" in report:  # a class-conditional model's NLL of x alone
        report["marginal_bits_per_dim"] = dataset.bits_per_dim(report["marginal_nll_nats"], split)
    path = run.dir / "evaluate.json"
    try:
        previous = json.loads(path.read_text()) if path.exists() else {}
    except json.JSONDecodeError:
        previous = {}
    atomic_write_text(path, json.dumps({**previous, split: report}, indent=2) + "\n")
    return report


def _as_array(x: torch.Tensor, values: str) -> np.ndarray:
    """Samples as saved: small integers for discrete values, float32 for reals."""
    return x.cpu().numpy().astype(np.uint8 if values in ("binary", "levels") else np.float32)


def sample_labels(run: Run, n: int, label: int | None) -> torch.Tensor | None:
    """Labels for ``n`` samples: ``label`` for all, or the classes in turn; None if unconditional."""
    classes = run.model.classes
    if not classes:
        if label is not None:
            raise BadArgument("label", f"given, but the model in {run.dir} is not conditioned on labels")
        return None
    if label is None:
        return torch.arange(n) % classes
    if not 0 <= label < classes:
        raise BadArgument("label", f"must be between 0 and {classes - 1} (got {label})")
    return torch.full((n,), label)


def sample_run(run: Run, n: int, seed: int, label: int | None = None, means: bool = False) -> dict[str, Path]:
    """Draw ``n`` exact samples; write samples/seed<S>-n<N>[-label<L>|-means].npy, a PNG grid for
    images, and the labels of a class-conditional model's samples beside them.

    A VAE draws z from the prior and decodes in one pass; ``means`` keeps p(x_d = 1 | z)."""
    if n < 1:
        raise BadArgument("n", f"must be at least 1 (got {n})")
    check_seed(seed)
    labels = sample_labels(run, n, label)
    generator = torch.Generator().manual_seed(seed)
    x = run.model.draw(n, generator, labels=labels, means=means).cpu()
    stem = f"seed{seed}-n{n}" + (f"-label{label}" if label is not None else "") + ("-means" if means else "")
    out = {"npy": run.dir / "samples" / f"{stem}.npy"}
    _save_npy(out["npy"], x.numpy().astype(np.float32) if means else _as_array(x, run.config.data.values))
    if labels is not None:
        out["labels"] = run.dir / "samples" / f"{stem}-labels.npy"
        _save_npy(out["labels"], labels.numpy())
    if run.model.features == 2 and not run.model.head.discrete:  # a 2-D density: the picture beside
        out["png"] = out["npy"].with_suffix(".png")
        panels = density_panels(run.model, x, None if labels is None else sorted(set(labels.tolist())))
        title = f"class {label}" if label is not None else None
        save_png(out["png"], panels, 2, headings=["model density", f"{n} samples"], title=title)
    elif run.image_shape:
        out["png"] = out["npy"].with_suffix(".png")
        shown = display_values(x, run.config.data).view(n, *run.image_shape)
        if labels is not None and label is None:  # the classes in turn: a row per class, labelled
            cells, ncol, names = rows_by_class(shown, labels)
            save_png(out["png"], cells, ncol, row_labels=names)
        else:
            title = f"class {label}" if label is not None else None
            save_png(out["png"], shown, math.ceil(math.sqrt(n)), title=title)
    return out


DENSITY_PIXELS = 160  # a 2-D picture's side: the density and the samples on the same grid
_HISTOGRAM_CELL = 4  # density pixels per side of one histogram bin


@torch.no_grad()
def density_panels(model: DensityModel, x: torch.Tensor, classes: list[int] | None) -> torch.Tensor:
    """Two grey panels (2, P, P) over the square that holds the samples ``x`` (n, 2): the model's
    density on a P x P grid (the mean over ``classes`` for a class-conditional model, as the
    samples were drawn), and a histogram of the samples over the same square in bins of 4 x 4
    pixels; each scaled to its peak.
    Rows run from high y at the top to low y at the bottom, as in a plot."""
    p = DENSITY_PIXELS
    low = torch.quantile(x, 0.005, dim=0)
    high = torch.quantile(x, 0.995, dim=0)
    centre, half = (low + high) / 2, float((high - low).max()) * 0.6 + 1e-6
    side = (torch.arange(p, dtype=torch.float64) + 0.5) / p * 2 * half - half
    xs, ys = centre[0] + side, centre[1] + side.flip(0)  # image rows: y from high to low
    grid = torch.stack([xs.repeat(p), ys.repeat_interleave(p)], 1)  # (P * P, 2), row-major
    device = next(model.parameters()).device
    grid = grid.to(device, next(model.parameters()).dtype)
    if classes is None:
        log_p = model.log_prob(grid)
    else:
        per = [model.log_prob(grid, torch.full((p * p,), y, device=device)) for y in classes]
        log_p = torch.logsumexp(torch.stack(per), 0) - math.log(len(classes))
    density = (log_p - log_p.max()).exp().view(p, p).cpu().float()
    bins = p // _HISTOGRAM_CELL  # coarser than the density: a few thousand samples fill them
    col = ((x[:, 0].double() - (centre[0] - half)) / (2 * half) * bins).floor().long()
    row = (((centre[1] + half) - x[:, 1].double()) / (2 * half) * bins).floor().long()
    inside = (col >= 0) & (col < bins) & (row >= 0) & (row < bins)
    counts = torch.zeros(bins * bins).index_add_(0, (row * bins + col)[inside], torch.ones(int(inside.sum())))
    cell = _HISTOGRAM_CELL
    counts = counts.view(bins, bins).repeat_interleave(cell, 0).repeat_interleave(cell, 1)
    return torch.stack([density, counts / counts.max().clamp_min(1)])


OBSERVED_MASKS = ("top", "bottom", "left", "right", "centre", "random")


def observed_mask(
    which: str,
    features: int,
    image_shape: tuple[int, int] | None,
    rows: int,
    generator: torch.Generator,
    fraction: float = 0.5,
) -> torch.Tensor:
    """Which dimensions are observed (rows, D) bool.

    top, bottom, left, right: that half of each image is observed; centre: all but a centre
    square of half the side; random: each dimension with probability ``fraction``. Data that
    are not images have a first (top) and last (bottom) half of their dimensions.
    """
    if which not in OBSERVED_MASKS:
        raise BadArgument("mask", f"must be one of {', '.join(OBSERVED_MASKS)} (got {which!r})")
    if which == "random":
        if not 0.0 < fraction < 1.0:
            raise BadArgument("fraction", f"must be between 0 and 1 (got {fraction})")
        return torch.rand(rows, features, generator=generator) < fraction
    if image_shape is None:
        if which not in ("top", "bottom"):
            raise BadArgument("mask", f"{which} needs image data; for these data use top, bottom or random")
        image_shape = (features, 1)
    h, w = image_shape
    grid = torch.zeros(h, w, dtype=torch.bool)
    if which == "top":
        grid[: h // 2] = True
    elif which == "bottom":
        grid[h - h // 2 :] = True
    elif which == "left":
        grid[:, : w // 2] = True
    elif which == "right":
        grid[:, w - w // 2 :] = True
    else:  # centre: the square of half the side in the middle is missing
        grid[:] = True
        grid[h // 4 : h // 4 + h // 2, w // 4 : w // 4 + w // 2] = False
    return grid.reshape(1, -1).expand(rows, -1).clone()


@dataclass(frozen=True)
class CompletionResult:
    paths: dict[str, Path]
    indices: list[int]
    mask: str  # which observed set, in words
    conditional_nll: float  # mean -log p(missing | observed) in nats over the exact images; NaN if none
    conditional_bpd: float | None  # the same per missing dimension in bits, for discrete data
    missing: float  # dimensions sampled per image, on average
    exact_images: int  # images completed exactly from the model (every member generates observed first)
    sub_ensemble_images: int  # images completed exactly from the members that do, not from all
    approximate_by: str | None = None  # how a model with no exact conditional completed (a VAE)


_MISSING_RGB = (0.15, 0.25, 0.6)  # missing pixels in the pictures: a colour no image has


def complete_run(
    run: Run,
    n: int,
    per_image: int,
    seed: int,
    mask: str = "top",
    fraction: float = 0.5,
    rounds: int | None = None,
) -> CompletionResult:
    """Complete ``n`` random test images from an observed part (``observed_mask``), ``per_image``
    times each, as the model completes (a MADE exactly where its ordering generates the
    observed dimensions first; a VAE by ``rounds`` of iterative imputation, approximately)."""
    if n < 1 or per_image < 1:
        raise BadArgument(("n", "per_image"), "must be at least 1")
    check_seed(seed)
    dataset = _load_data(run)
    test = dataset.test
    generator = torch.Generator().manual_seed(seed)
    # The test file is sorted by digit: pick at random, never the first n.
    indices = torch.randperm(test.shape[0], generator=generator)[: min(n, test.shape[0])]
    k, d = len(indices), run.model.features
    device = next(run.model.parameters()).device
    originals = test[indices].to(device)  # (n, D)
    observed = observed_mask(mask, d, run.image_shape, k, generator, fraction).to(device)
    labels = dataset.split_labels("test") if run.model.classes else None  # given to a conditional model
    labels = None if labels is None else labels[indices].to(device)
    done = run.model.complete_rows(originals, observed, labels, per_image, generator, rounds)
    cond = done.conditional
    exact_rows = torch.tensor([s == EXACT for s in done.status], dtype=torch.bool, device=cond.device)
    missing = (~observed).sum(1).float()
    cond_nll = float(-cond[exact_rows].mean()) if exact_rows.any() else math.nan
    bpd = None
    if run.model.head.discrete and exact_rows.any():
        bpd = float((-cond[exact_rows] / missing[exact_rows]).mean() / math.log(2))
    completions = done.values.view(k, per_image, d).cpu()
    stem = run.dir / "completions" / f"{mask}-seed{seed}-n{k}"
    paths = {"npz": stem.with_suffix(".npz")}
    buffer = io.BytesIO()
    values = run.config.data.values
    np.savez(
        buffer,
        indices=indices.numpy(),
        originals=_as_array(originals, values),
        observed=observed.cpu().numpy(),
        completions=_as_array(completions, values),
        exact=exact_rows.cpu()[:, None].expand(k, per_image).numpy(),
    )
    atomic_write_bytes(paths["npz"], buffer.getvalue())
    if run.image_shape:
        shown = display_values(torch.cat([originals.cpu()[:, None], completions], 1), run.config.data)
        rgb = shown[:, :, None].expand(-1, -1, 3, -1).clone()  # (n, 1 + per_image, 3, D)
        hidden = torch.tensor(_MISSING_RGB)[:, None].expand(3, d)
        partial = torch.where(observed.cpu()[:, None], rgb[:, 0], hidden)  # observed part only
        rows = torch.cat([rgb[:, :1], partial[:, None], rgb[:, 1:]], 1)
        paths["png"] = stem.with_suffix(".png")
        spanned = ("completions", per_image) if per_image > 1 else "completion"
        names = None if labels is None else [f"class {int(c)}" for c in labels.tolist()]
        save_png(
            paths["png"],
            rows.view(-1, 3, *run.image_shape),
            2 + per_image,
            headings=["original", "observed", spanned],
            row_labels=names,
        )
    described = f"{mask} ({fraction:.0%} observed at random)" if mask == "random" else mask
    return CompletionResult(
        paths=paths,
        indices=indices.tolist(),
        mask=described,
        conditional_nll=cond_nll,
        conditional_bpd=bpd,
        missing=float(missing.mean()),
        exact_images=int(exact_rows.sum()),
        sub_ensemble_images=done.status.count(SUB_ENSEMBLE),
        approximate_by=done.method,
    )


def verify_target(target: Path | None, points: int) -> tuple[str, Verification, Path | None]:
    """Verify a run's model, or a freshly built model for a config file; returns (what, the
    checks as table rows, the run directory or None for a config)."""
    from .runs import load_run

    if target is not None and target.suffix in (".yaml", ".yml"):
        cfg = load_config(target)
        classes = dataset_classes(cfg.data) if cfg.model.condition_on == "label" else 0
        model = build_model(cfg, dataset_features(cfg.data), classes)
        what = f"config {target} (untrained)"
        run_dir = None
    else:
        run = load_run(target)
        cfg, model, what, run_dir = run.config, run.model, f"run {run.dir}", run.dir
    checks = kind_of(cfg.model.kind).verify(model, points)
    if run_dir is not None:
        payload = {"ok": all(checks.ok), "unit": checks.unit, "rows": checks.records}
        atomic_write_text(run_dir / "verify-ar.json", json.dumps(payload, indent=2) + "\n")
    return what, checks, run_dir


def _checkpoint_status(run_dir: Path) -> str:
    """"ok" if the checkpoint commands use (best, else last) loads, "none", or why it does not."""
    checkpoints = run_dir / "checkpoints"
    path = next((checkpoints / f for f in ("best.pt", "last.pt") if (checkpoints / f).is_file()), None)
    if path is None:
        return "none"
    try:
        load_checkpoint(path, mmap=True)
    except UsageError as e:
        return f"does not load: {e}"
    return "ok"


def list_runs(parent: Path) -> list[dict[str, Any]]:
    """One summary per run under ``parent``: dataset, model, epochs, best valid and test NLL
    (or what the kind's ``measure`` is), whether its checkpoint loads, and its run.json record."""
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
        name = str((cfg.get("model") or {}).get("kind", "made"))
        kind = KINDS.get(name)
        rows.append({
            "run": str(run_dir),
            "checkpoint": _checkpoint_status(run_dir),
            "record": read_record(run_dir),
            "data": (cfg.get("data") or {}).get("name", "?"),
            "values": (cfg.get("data") or {}).get("values", "binary"),
            "kind": name,
            "model": kind.summary(cfg) if kind else f"unknown kind {name!r}",
            "measure": kind.measure if kind else "NLL",
            "note": kind.note if kind else None,
            "epochs": epochs,
            "best_valid_nll": None if math.isinf(valid) else valid,
            "test_nll": test,
        })  # fmt: skip
    return rows
