"""Reproduce the binarized-MNIST table of Germain et al. (2015) as far as this machine allows.

Trains each config in configs/paper/ into its own run directory, then writes a markdown table
of test NLL (with the estimator that computed it), validation NLL, epochs and wall time, next
to the paper's figures where it reports one for that configuration.

    python scripts/paper_table.py                          # every config that fits a CPU
    python scripts/paper_table.py --gpu                    # also 2x8000 / 32 masks (17 h on 2 CPU cores)
    python scripts/paper_table.py --only 1x500-1mask --set train.epochs=1   # a quick look
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import torch

from made_cli.config import load_config
from made_cli.errors import MadeError
from made_cli.runs import new_run_dir
from made_cli.train import resolve_device, train

REPO = Path(__file__).resolve().parent.parent
# Germain et al. 2015, table 6; the configurations the paper reports a figure for.
PAPER_NATS = {"1x500-1mask": 88.40, "2x8000-32masks": 86.64}
GPU_ONLY = {"2x8000-32masks"}


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)  # training's lines
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", type=Path, default=REPO / "configs" / "paper")
    parser.add_argument("--only", nargs="*", help="config names (file stems) to run")
    parser.add_argument("--set", nargs="*", default=[], dest="overrides", help="overrides for every config")
    parser.add_argument(
        "--gpu",
        action="store_true",
        help="also run the configs sized for a GPU (2x8000, 32 masks: about 17 h on 2 CPU cores)",
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--runs", type=Path, default=Path("runs") / "paper", help="where the runs go")
    parser.add_argument("--out", type=Path, default=None, help="markdown file (default: RUNS/table.md)")
    args = parser.parse_args(argv)

    paths = sorted(args.configs.glob("*.yaml"))
    if args.only:
        paths = [p for p in paths if p.stem in args.only]
    elif not args.gpu:
        paths = [p for p in paths if p.stem not in GPU_ONLY]
    if not paths:
        print(f"no configs to run in {args.configs}", file=sys.stderr)
        return 2
    try:
        device = resolve_device(args.device)
        rows = [_run(path, args.overrides, device, args.runs) for path in paths]
    except MadeError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    lines = _table(rows, device)
    out = args.out or args.runs / "table.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"\nwrote {out}")
    return 0


def _run(path: Path, overrides: list[str], device: torch.device, runs: Path) -> dict[str, object]:
    cfg = load_config(path, overrides)
    print(f"== {path.stem}: hidden={list(cfg.model.hidden)} masks={cfg.model.num_masks}", flush=True)
    start = time.perf_counter()
    result = train(cfg, new_run_dir(cfg.name, runs), device)
    return {
        "name": path.stem,
        "hidden": "x".join(map(str, cfg.model.hidden)),
        "masks": cfg.model.num_masks,
        "estimator": result.estimator,
        "test": result.test_nll,
        "bpd": result.test_bpd,
        "valid": result.valid_nll,
        "epochs": f"{result.best_epoch} / {result.epochs_run}",
        "minutes": (time.perf_counter() - start) / 60,
        "paper": PAPER_NATS.get(path.stem),
        "run": result.run_dir,
    }


def _table(rows: list[dict[str, object]], device: torch.device) -> list[str]:
    cpu = f"CPU, {torch.get_num_threads()} threads"
    where = torch.cuda.get_device_name() if device.type == "cuda" else cpu
    lines = [
        f"Binarized MNIST test NLL (nats; lower is better), made on {where}, torch {torch.__version__}",
        "",
        "| config | hidden | masks | test NLL | bits/dim | estimator | valid NLL | best / run epochs "
        "| time | paper |",
        "| --- | --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        paper = "-" if r["paper"] is None else f"{r['paper']:.2f}"
        lines.append(
            f"| {r['name']} | {r['hidden']} | {r['masks']} | **{r['test']:.2f}** | {r['bpd']:.4f} "
            f"| {r['estimator']} | {r['valid']:.2f} | {r['epochs']} | {r['minutes']:.1f} min | {paper} |"
        )
    return lines


if __name__ == "__main__":
    sys.exit(main())
