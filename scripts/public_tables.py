"""made on public tables as users have them: each file trained with no settings, then its samples
set against its rows.

    pip install palmerpenguins vega_datasets      # the tables ship inside these packages
    python scripts/public_tables.py examples/public/  [-- made train overrides]

Writes three files as a user would have them and runs ``made train FILE`` and ``made sample`` on
each: Palmer penguins (344 rows; text columns, 19 empty cells, a year), Seattle weather (1461
days; a date, rain that is exactly 0 on more than half of the days, a text column) and the cars
table (406 rows; a name per row, a model year as a date, empty cells). Prints, per table, the
run, its test NLL against the independent per-column baseline, and what the samples keep: the
share of each real column's samples beyond its data's range widened by its width on each side,
the point masses and supports, and the dependent text columns.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pyarrow.csv as pcsv


def write_tables(folder: Path) -> dict[str, Path]:
    import palmerpenguins
    from vega_datasets import data

    folder.mkdir(parents=True, exist_ok=True)
    frames = {
        "penguins": palmerpenguins.load_penguins(),
        "seattle-weather": data.seattle_weather(),
        "cars": data.cars(),
    }
    paths = {}
    for name, frame in frames.items():
        paths[name] = folder / f"{name}.csv"
        frame.to_csv(paths[name], index=False, date_format="%Y-%m-%d")
    return paths


def made(*args: str) -> str:
    done = subprocess.run(["made", *args], check=True, capture_output=True, text=True)
    return done.stdout


def outside_share(data: np.ndarray, samples: np.ndarray) -> float:
    """Share of samples beyond the data's range widened by its width on each side."""
    low, high = np.nanmin(data), np.nanmax(data)
    width = high - low
    return float(((samples < low - width) | (samples > high + width)).mean())


def crosstab(a: list, b: list) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for x, y in zip(a, b, strict=True):
        if x is None or y is None:
            continue
        out.setdefault(str(x), {}).setdefault(str(y), 0)
        out[str(x)][str(y)] += 1
    return {k: dict(sorted(v.items())) for k, v in sorted(out.items())}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("folder", type=Path)
    parser.add_argument("overrides", nargs="*", help="made train overrides, after --")
    args = parser.parse_args()
    for name, path in write_tables(args.folder).items():
        run = args.folder / f"{name}-run"
        if not (run / "checkpoints" / "best.pt").exists():
            made("train", str(path), "--run-dir", str(run), *args.overrides)
        log = (run / "logs" / "train.log").read_text()
        data = pcsv.read_csv(path)
        n = data.num_rows
        made("sample", str(run), "--n", str(n))
        samples = pcsv.read_csv(run / "samples" / f"seed0-n{n}.csv")
        schema = json.loads((run / "schema.json").read_text())
        report: dict[str, object] = {
            "table": name,
            "run": str(run),
            "test_nll": float(re.findall(r"test NLL\s+(-?[\d.]+)", log)[-1]),
            "baseline_nll": float(re.search(r"baseline (-?[\d.]+) nats", log).group(1)),  # type: ignore[union-attr]
            "left_out": schema["left_out"],
        }
        outside = {}
        for column in schema["columns"]:
            if column["categories"] or column["kind"] in ("date", "timestamp"):
                continue
            got = samples.column(column["name"]).to_numpy(zero_copy_only=False).astype(float)
            want = data.column(column["name"]).to_numpy(zero_copy_only=False).astype(float)
            outside[column["name"]] = round(outside_share(want, got), 4)
            law = column.get("law") or {}
            if law.get("lower") is not None:
                report[f"{column['name']} below {law['lower']:g}"] = int((got < law["lower"]).sum())
            if np.nanmean(want == 0) > 0.05:  # a share of zeros: the data's and the samples'
                zeros = [round(float(np.nanmean(want == 0)), 3), round(float(np.mean(got == 0)), 3)]
                report[f"{column['name']} = 0, data/samples"] = zeros
        report["samples beyond the widened range"] = outside
        if name == "penguins":
            species, island = data["species"].to_pylist(), data["island"].to_pylist()
            report["species x island, data"] = crosstab(species, island)
            report["species x island, samples"] = crosstab(
                samples["species"].to_pylist(), samples["island"].to_pylist()
            )
        if name == "seattle-weather":
            report["weather, data"] = crosstab(data["weather"].to_pylist(), ["n"] * n)
            report["weather, samples"] = crosstab(samples["weather"].to_pylist(), ["n"] * n)
        print(json.dumps(report, indent=1), flush=True)


if __name__ == "__main__":
    main()
