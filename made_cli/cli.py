"""The `made` command: each subcommand parses, calls one library function, prints, sets the exit code."""

from __future__ import annotations

import json
import logging
import math
import os
import shlex
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.highlighter import NullHighlighter
from rich.logging import RichHandler
from rich.table import Table
from rich.text import Text

from .errors import BadArgument, CheckFailed, Interrupted, MadeError, UsageError
from .runs import LOGGER, command_log

app = typer.Typer(
    name="made",
    help="Density estimation with masked autoregressive networks (MADE).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
console = Console(highlight=False, soft_wrap=True)

_option_type = getattr(typer.core.TyperOption, "display_type_rich", None)  # newer typers show types


def _flag_type(self: typer.core.TyperOption, ctx: Any) -> str | None:
    """An option's type in --help, none for a flag: ``--json`` takes no value, so Typer's
    ``<bool>`` beside it reads as if it took one."""
    return None if self.is_flag else _option_type(self, ctx)  # type: ignore[misc]


if _option_type is not None:
    typer.core.TyperOption.display_type_rich = _flag_type  # type: ignore[method-assign]
log = logging.getLogger(__name__)  # what a command says: on the console, and in the run's log


def _show_version(value: bool) -> None:
    if value:
        from . import __version__

        typer.echo(f"made {__version__}")
        raise typer.Exit()


class _Lines(RichHandler):
    """rich's handler, printing each message as the one plain line it is (no time or level
    columns, no wrapping at the terminal's width, no highlighting)."""

    def render(self, *, record: logging.LogRecord, traceback: object, message_renderable: Any) -> Any:
        return message_renderable


_CONSOLE_LINES = _Lines(console=console, markup=False, highlighter=NullHighlighter(), show_path=False)


def _log_to_console() -> None:
    """What the package logs (``runs.LOGGER``) goes to the console, once, whichever command runs."""
    logger = logging.getLogger(LOGGER)
    logger.setLevel(logging.INFO)
    if _CONSOLE_LINES not in logger.handlers:
        logger.addHandler(_CONSOLE_LINES)
    _CONSOLE_LINES.setLevel(logging.INFO)


@contextmanager
def _off_console() -> Iterator[None]:
    """Log to the command's file alone (a --json report, an error already printed on stderr)."""
    level = _CONSOLE_LINES.level
    _CONSOLE_LINES.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        _CONSOLE_LINES.setLevel(level)


@app.callback()
def _main_options(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_show_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Density estimation with masked autoregressive networks (MADE)."""
    _log_to_console()


RunArg = Annotated[
    Path | None,
    typer.Argument(help="Run directory or checkpoint file; default: the newest run under ./runs."),
]
DeviceOpt = Annotated[str, typer.Option(help="auto, cpu or cuda.")]


@contextmanager
def _boundary() -> Iterator[None]:
    """Turn domain errors into one line on stderr and an exit code; never a traceback."""
    try:
        yield
    except Interrupted as e:  # saved and resumable: news, not an error
        typer.echo(str(e), err=True)
        raise typer.Exit(e.exit_code) from None
    except BadArgument as e:  # the library names arguments; options are spelt here alone
        typer.echo(f"error: {e.worded(_option)}", err=True)
        raise typer.Exit(e.exit_code) from None
    except MadeError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(e.exit_code) from None
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        raise typer.Exit(130) from None
    except (typer.Exit, typer.Abort):
        raise
    except Exception as e:
        if os.environ.get("MADE_DEBUG"):
            raise
        detail = " ".join(str(e).split())
        typer.echo(
            f"error: internal error ({type(e).__name__}: {detail}); rerun with MADE_DEBUG=1 for details",
            err=True,
        )
        raise typer.Exit(1) from None


def _option(argument: str) -> str:
    """How a function's argument is spelt as an option: per_image -> --per-image."""
    return "--" + argument.replace("_", "-")


def _usage(message: str, command: str) -> UsageError:
    """A misuse of a command's arguments, pointing to that command's help."""
    return UsageError(f"{message} (see: made {command} --help)")


def _log_lines(run_dir: Path, command: str, lines: list[str]) -> None:
    """Say each line, and keep it in the run's log of the command."""
    with command_log(run_dir, command):
        for line in lines:
            log.info(line)


def _fmt_nll(nll: float, bpd: float | None) -> str:
    """An NLL in nats, with bits/dim where the data have them (not for plain real values)."""
    return f"{nll:.2f} nats" + ("" if bpd is None else f" ({bpd:.4f} bits/dim)")


@app.command()
def train(
    config: Annotated[
        str | None,
        typer.Argument(
            help="YAML config, e.g. configs/mnist.yaml, or a table (.csv, .tsv, .parquet) to train on "
            "with the table defaults (none with --resume)."
        ),
    ] = None,
    overrides: Annotated[
        list[str] | None, typer.Argument(help="Dotted overrides: model.hidden=[500,500] train.lr=3e-4")
    ] = None,
    resume_run: Annotated[
        Path | None,
        typer.Option("--resume", help="Continue this run from its last checkpoint (train.* may change)."),
    ] = None,
    run_dir: Annotated[Path | None, typer.Option(help="Write into this new run directory.")] = None,
    device: DeviceOpt = "auto",
    print_config: Annotated[
        bool, typer.Option("--print-config", help="Print the resolved config and exit.")
    ] = False,
) -> None:
    """Train a model from a YAML config into a new run directory, or resume a run.

    SIGINT or SIGTERM finish the current step, save the last checkpoint and exit 130 or 143.

    Example: made train configs/mnist.yaml model.hidden=[500,500] train.lr=3e-4

    Example: made train penguins.csv train.epochs=50

    Example: made train --resume runs/mnist-20261121-101500 train.epochs=200
    """
    with _boundary():
        from . import distributed
        from .config import config_to_yaml, load_config
        from .runs import RUNS_DIR, discard_if_empty, new_run_dir, resolve_run
        from .train import resolve_device, resume
        from .train import train as run_training

        extra = list(overrides or [])
        if resume_run is None and config is None:
            raise _usage("missing CONFIG: made train configs/mnist.yaml (or --resume RUN)", "train")
        if resume_run is not None and config is not None:
            if "=" in config and not Path(config).exists():
                extra.insert(0, config)  # `--resume RUN key=value`: no config, only overrides
            else:
                raise _usage("give a CONFIG or --resume RUN, not both", "train")
        cfg = None if resume_run is not None else load_config(config, extra)
        if cfg is not None and print_config:
            console.print(config_to_yaml(cfg), markup=False, end="")
            return
        group, dev = distributed.from_env(resolve_device(device))  # under torchrun: join the group
        if resume_run is not None:
            target = resolve_run(resume_run)
        else:
            if run_dir is not None and run_dir.exists() and not run_dir.is_dir():
                raise UsageError(f"--run-dir {run_dir} is a file, not a directory")
            if run_dir is not None and (run_dir / "checkpoints").exists():
                raise UsageError(f"{run_dir} already holds a run; resume it with --resume {run_dir}")
            # rank 0 names the run; train() hands its path to the other ranks
            made_runs_dir = run_dir is None and not RUNS_DIR.exists()  # removed again if training fails
            target = run_dir or (new_run_dir(cfg.name) if group.main else None)
        named = [config] if config is not None and resume_run is None else []  # else it is in extra
        typed = [*named, *extra]  # the command line, as run.json keeps it
        for flag, value in (("--resume", resume_run), ("--run-dir", run_dir), ("--device", device)):
            if value is not None and value != "auto":
                typed += [flag, str(value)]
        command = shlex.join(["made", "train", *typed])
        if not group.main:  # rank 0 alone speaks and keeps the log
            logging.getLogger(LOGGER).setLevel(logging.WARNING)
        try:
            with command_log(target, "train") if group.main else nullcontext():
                try:
                    if resume_run is not None:
                        result = resume(target, extra, dev, console=console, group=group, command=command)
                    else:
                        result = run_training(
                            cfg, target, dev, console=console, group=group, command=command, overrides=extra
                        )
                except MadeError as e:
                    if not isinstance(e, UsageError):  # refused input leaves the run as it was
                        with _off_console():  # _boundary prints it on stderr
                            log.info(str(e) if isinstance(e, Interrupted) else f"error: {e}")
                    raise
                finally:
                    group.close()
                log.info(
                    f"best epoch {result.best_epoch} of {result.epochs_run}, {result.seconds:.0f}s "
                    f"[{result.estimator}]"
                )
                log.info(f"valid {result.measure} {_fmt_nll(result.valid_nll, result.valid_bpd)}")
                log.info(f"test {result.measure}  {_fmt_nll(result.test_nll, result.test_bpd)}")
                if result.measure != "NLL":
                    log.info(f"the NLL itself: made evaluate {result.run_dir}")
        except MadeError:
            if resume_run is None and group.main:
                # a run that never saved a checkpoint is no run; nor is the runs/ made for it
                discard_if_empty(target, parent_too=made_runs_dir)
            raise


@app.command()
def evaluate(
    run: RunArg = None,
    split: Annotated[str, typer.Option(help="train, valid or test.")] = "test",
    samples: Annotated[
        int | None,
        typer.Option(help="VAE runs: importance samples K per image (default: the config's, 1000)."),
    ] = None,
    seed: Annotated[int | None, typer.Option(help="VAE runs: seeds the importance samples (0).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    device: DeviceOpt = "auto",
) -> None:
    """Report the NLL of a trained model on a split, in nats and bits/dim.

    A MADE's NLL is exact. A VAE's is the importance-weighted estimate with K samples per
    image (Burda et al. 2016; at least the ELBO, and rising towards log p(x) with K), reported
    with the ELBO, its reconstruction and KL terms from the same samples.

    Example: made evaluate runs/mnist-20261121-101500 --split valid --json

    Example: made evaluate runs/iaf-20261121-101500 --samples 5000
    """
    with _boundary():
        from .commands import evaluate_run
        from .runs import load_run
        from .train import resolve_device

        if split not in ("train", "valid", "test"):
            raise _usage(f"--split must be train, valid or test (got {split!r})", "evaluate")
        loaded = load_run(run, device=resolve_device(device))
        with _progress_bar(f"importance sampling ({split})", disable=as_json) as progress:
            report = evaluate_run(loaded, split, samples=samples, seed=seed, progress=progress)
        lines = [
            f"{split} NLL {_fmt_nll(report['nll_nats'], report['bits_per_dim'])} "
            f"on {report['examples']} examples [{report['estimator']}]"
        ]
        if "elbo_nats" in report:
            lines.append(
                f"{split} ELBO {report['elbo_nats']:.2f} nats (reconstruction "
                f"{report['reconstruction_nats']:.2f}, KL {report['kl_nats']:.2f}) "
                f"[mean over the same {report['samples']} samples]"
            )
        if "marginal_nll_nats" in report:  # a class-conditional model, as a density of x alone
            marginal = _fmt_nll(report["marginal_nll_nats"], report["marginal_bits_per_dim"])
            lines.append(f"{split} NLL {marginal} of x alone [{report['marginal_estimator']}]")
        if "discrete_nll_nats" in report:  # a table: the parts of the total
            mixture = report.get("mixture_nll_nats")
            lines.append(
                f"{split} NLL in parts: discrete columns {report['discrete_nll_nats']:.2f} nats, real "
                f"columns {report['continuous_nll_nats']:.2f} nats"
                + ("" if mixture is None else f", mask mixture {mixture:.2f} nats")
                + " (they sum to the total)"
            )
        with command_log(loaded.dir, "evaluate"), _off_console() if as_json else nullcontext():
            for line in lines:
                log.info(line)
        if as_json:
            typer.echo(json.dumps(report))


@contextmanager
def _progress_bar(what: str, disable: bool = False) -> Iterator[Callable[[int, int], None]]:
    """A transient progress bar on the console, fed (done, total); shown once it is first fed."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(
        TextColumn(what), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=console, transient=True, disable=disable or not console.file.isatty(),
    )  # fmt: skip
    task = None

    def advance(done: int, total: int) -> None:
        nonlocal task
        if task is None:  # started here, not before: an unused bar would still print a blank line
            bar.start()
            task = bar.add_task(what, total=total)
        bar.update(task, completed=done)

    try:
        yield advance
    finally:
        if task is not None:
            bar.stop()


@app.command()
def sample(
    run: RunArg = None,
    n: Annotated[int, typer.Option("--n", help="How many samples.")] = 64,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same samples.")] = 0,
    label: Annotated[
        str | None,
        typer.Option(
            help="Class-conditional models: sample this class, by index or (a table's) name "
            "(default: the classes in turn)."
        ),
    ] = None,
    means: Annotated[
        bool, typer.Option("--means", help="VAE runs: save p(x = 1 | z) instead of binary draws.")
    ] = False,
    given: Annotated[
        list[str] | None,
        typer.Option(
            metavar="COL=VALUE",
            help="Table runs: fix cells, col=value[,col=value...] (modelled, label or context columns); "
            "the rows are drawn from the model's law given them.",
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Table runs: write the samples here (.csv, .tsv or .parquet).")
    ] = None,
    steps: Annotated[
        int | None,
        typer.Option(
            help="--given: Metropolis-Hastings moves per chain where no ordering gives the cells first (200)."
        ),
    ] = None,
    device: DeviceOpt = "auto",
) -> None:
    """Draw exact samples: a PNG grid for image data, a table of a table's columns, and the raw .npy.

    A MADE samples ancestrally; a VAE draws z from the prior and decodes all pixels in one pass.
    A model with context columns samples given those of random test rows (written beside), or
    given --given's. With --given, rows are drawn from p(rest | given cells): exactly where every
    ordering generates the given cells first, else as the ends of Markov chains that follow the
    model (Metropolis-Hastings; acceptance and effective sample size are printed).

    Example: made sample --n 64 --seed 1

    Example: made sample runs/mnist-label-20261121-101500 --label 3

    Example: made sample runs/penguins-20261121-101500 --given island=Dream,sex=female --out dream.csv

    Example: made sample runs/iaf-20261121-101500 --means
    """
    with _boundary():
        from .commands import sample_run
        from .runs import load_run
        from .train import resolve_device

        if steps is not None and steps < 0:
            raise BadArgument("steps", f"must be at least 0 (got {steps})")
        loaded = load_run(run, device=resolve_device(device))
        paths = sample_run(loaded, n, seed, label, means, given, out, steps)
        drawn = paths.pop("given", None)
        of = ""
        if loaded.model.classes and not (given and any(g.split("=")[0] == getattr(
                loaded.table_schema.label, "name", None) for g in ",".join(given).split(","))):  # type: ignore[union-attr]  # fmt: skip
            of = f" of class {label}" if label is not None else ", classes in turn"
        if drawn is not None:
            how = "exact: every ordering generates the given cells first" if drawn.status == "exact" else (
                f"Markov chains of {drawn.steps} Metropolis-Hastings moves, acceptance {drawn.acceptance:.3f}"
                + ("" if math.isnan(drawn.ess) else f", effective sample size {drawn.ess:.1f}")
                + ": their stationary law is p(rest | given)"
            ) if drawn.status == "Markov chain" else drawn.status  # fmt: skip
            lines = [f"{n} samples given {drawn.given}{of} (seed {seed}) from {loaded.dir} [{how}]"]
        else:
            lines = [f"{n} samples{of} (seed {seed}) from {loaded.dir} [{loaded.model.sampler_name(means)}]"]
        _log_lines(loaded.dir, "sample", [*lines, *(f"wrote {path}" for path in paths.values())])


@app.command()
def complete(
    run_or_file: Annotated[
        list[str] | None,
        typer.Argument(
            help="[RUN] [FILE]: the run (default: the newest) and, for a table run, a table whose missing "
            "cells to fill."
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            help="FILE: where the completed table goes (.csv, .tsv, .parquet; default: in the run)."
        ),
    ] = None,
    per_row: Annotated[
        int,
        typer.Option(help="FILE: imputations per row (more than 1: a long table with an imputation column)."),
    ] = 1,
    columns: Annotated[
        str | None, typer.Option(help="FILE: blank and redraw these columns in every row, a,b,...")
    ] = None,
    half: Annotated[
        bool,
        typer.Option("--half", help="Observe the top half of each image or row (same as --mask top)."),
    ] = False,
    mask: Annotated[
        str | None,
        typer.Option(
            help="What is observed of each test image (its pixels) or test row (its cells): top, "
            "bottom, left or right half; centre (all but a centre square); random (see --fraction). "
            "Default: top."
        ),
    ] = None,
    fraction: Annotated[
        float | None, typer.Option(help="--mask random: the share of pixels (a table: cells) observed (0.5).")
    ] = None,
    n: Annotated[
        int, typer.Option("--n", help="How many held-out test images (a table run: test rows).")
    ] = 16,
    per_image: Annotated[int, typer.Option(help="Completions drawn per test image or row.")] = 3,
    seed: Annotated[
        int, typer.Option(help="Chooses the test images or rows, random masks and the completions.")
    ] = 0,
    rounds: Annotated[
        int | None, typer.Option(help="VAE runs: rounds of iterative imputation (default 50).")
    ] = None,
    steps: Annotated[
        int | None,
        typer.Option(
            help="MADE runs: Metropolis-Hastings moves for each completion that is not exact "
            "(default 200; 0: the approximate first draw)."
        ),
    ] = None,
    device: DeviceOpt = "auto",
) -> None:
    """Complete random held-out test images from an observed part, or fill a table's missing cells.

    With a table FILE (and a table run), every missing cell is drawn from the model's
    p(missing | observed): exactly where every ordering generates the row's observed cells
    first, else as the end of a Markov chain that follows the model; observed cells are kept as
    written, in FILE's format and column order. --per-row K gives K imputations per row
    (multiple imputation, a long table with an imputation column); --columns a,b redraws those
    columns in every row. A file with no missing cell (and no --columns) is refused (exit 2).

    Otherwise writes originals | observed part | completions as a PNG (missing pixels in blue), the arrays
    as .npz, what each image got as .json, and the model's conditional NLL of the true missing
    part where it is exact: when every ordering generates the observed pixels first. Any other
    image is completed by a Markov chain whose stationary law is the model's p(missing |
    observed) (Metropolis-Hastings, proposals from the model's own conditionals), with its
    acceptance rate and, for several completions, effective sample size. A VAE completes by
    iterative imputation (z ~ q(z | x), then the missing pixels ~ p(x | z), repeated): approximate.

    Example: made complete --half --n 16 --seed 0

    Example: made complete --mask centre --per-image 5 --steps 500

    Example: made complete runs/penguins-20261121-101500 penguins.csv --out filled.csv --per-row 5
    """
    with _boundary():
        from .commands import complete_run
        from .runs import load_run
        from .tables import table_format
        from .train import resolve_device

        args = list(run_or_file or [])
        if len(args) > 2:
            raise _usage(f"give [RUN] [FILE], not {len(args)} arguments", "complete")
        # RUN FILE; or one argument, the FILE when it has a table's extension
        table_file = len(args) == 2 or (args and table_format(Path(args[-1])) is not None)
        file = Path(args.pop()) if table_file else None
        run = args[0] if args else None
        if file is None and (out is not None or per_row != 1 or columns is not None):
            raise _usage("--out, --per-row and --columns go with a table FILE to complete", "complete")
        if file is not None:
            if half or mask is not None or fraction is not None or rounds is not None:
                raise _usage(
                    "--half, --mask, --fraction and --rounds are for test images, not a FILE", "complete"
                )
            if steps is not None and steps < 0:
                raise BadArgument("steps", f"must be at least 0 (got {steps})")
            _complete_file(run, file, out, per_row, steps, columns, seed, device)
            return

        if half and mask not in (None, "top"):
            raise _usage(f"--half is --mask top; it cannot go with --mask {mask}", "complete")
        chosen = mask or "top"
        if fraction is not None and chosen != "random":
            raise _usage(f"--fraction goes with --mask random, not --mask {chosen}", "complete")
        if steps is not None and steps < 0:
            raise BadArgument("steps", f"must be at least 0 (got {steps})")
        loaded = load_run(run, device=resolve_device(device))
        fraction = 0.5 if fraction is None else fraction
        result = complete_run(loaded, n, per_image, seed, chosen, fraction, rounds, steps)
        images, pixels = ("images", "pixels") if loaded.image_shape else ("rows", "cells")  # or a table's
        lines: list[str] = []
        k = len(result.indices)
        lines.append(
            f"completed {k} test {images} x {per_image}, observed: {result.mask} (seed {seed}), "
            f"{result.missing:.0f} dimensions sampled each"
        )
        if result.exact_images:
            bits = "" if result.conditional_bpd is None else f" ({result.conditional_bpd:.4f} bits/dim)"
            exact = result.exact_images
            which = f"all {images}" if exact == k else f"the {exact} exact {images}"
            lines.append(
                f"conditional NLL of the true missing part: {result.conditional_nll:.2f} nats per "
                f"{images[:-1]}{bits} over {which} [exact: the ordering generates the observed "
                f"{pixels} first]"
            )
        if result.chain_images:
            kept = result.steps - result.steps // 2  # the states of each chain's second half
            ess = (
                ""
                if math.isnan(result.ess)
                else (
                    f", effective sample size {result.ess:.1f} of the {per_image} x {kept} states of "
                    "its chains' second halves"
                )
            )
            low, high = result.acceptance_range
            one = images[:-1]
            lines.append(
                f"Markov chain for {result.chain_images} of {k} {images}: {result.steps} Metropolis-Hastings "
                f"moves each, acceptance {result.acceptance:.3f} (from {low:.3f} to {high:.3f} per {one})"
                f"{ess} ({result.seconds_per_image:.2f}s per {one}) [the chain's stationary law is "
                "p(missing | observed)]"
            )
        if result.sub_ensemble_images:
            lines.append(
                f"{result.sub_ensemble_images} of {k} {images} completed exactly from the ensemble "
                f"members that generate their observed {pixels} first, which is not the conditional "
                "of the whole mixture (no conditional NLL for them)"
            )
        approximate = k - result.exact_images - result.sub_ensemble_images
        if result.approximate_by:
            by = result.approximate_by
            lines.append(f"approximate completion for all {k} {images}: {by} (no conditional NLL)")
        elif approximate and not result.chain_images:
            lines.append(
                f"approximate completion for {approximate} of {k} {images}: no ordering of the model "
                f"generates their observed {pixels} first, so missing {pixels} drawn earlier ignore "
                f"observed {pixels} that come later (no conditional NLL for them; --steps N runs "
                "Markov chains that follow the model)"
            )
        lines += [f"wrote {path}" for path in result.paths.values()]
        _log_lines(loaded.dir, "complete", lines)


def _complete_file(
    run: str | None,
    file: Path,
    out: Path | None,
    per_row: int,
    steps: int | None,
    columns: str | None,
    seed: int,
    device: str,
) -> None:
    """`made complete RUN FILE`: fill the table's missing cells, say how each row was drawn."""
    from .commands import impute_file
    from .runs import load_run
    from .train import resolve_device

    loaded = load_run(run, device=resolve_device(device))
    names = [c.strip() for c in columns.split(",") if c.strip()] if columns else None
    result = impute_file(loaded, file, out, per_row, steps, names, seed)
    each = f" x {per_row} imputations" if per_row > 1 else ""
    lines = [
        f"completed {result.completed} of {result.rows} rows of {file}{each}, {result.cells} cells drawn "
        f"(seed {seed})"
    ]
    if result.exact:
        lines.append(
            f"{result.exact} rows exact [drawn from p(missing | observed) directly: every ordering generates "
            "their observed cells first, or their gaps are a few discrete values, enumerated]"
        )
    if result.chain:
        ess = (
            ""
            if math.isnan(result.ess)
            else f", effective sample size {result.ess:.1f} of the {per_row} chains' second halves"
        )
        lines.append(
            f"{result.chain} rows by Markov chains of {result.steps} Metropolis-Hastings moves, acceptance "
            f"{result.acceptance:.3f}{ess} [the chain's stationary law is p(missing | observed)]"
        )
    for how, count in result.others.items():
        lines.append(f"{count} rows: {how}")
    for why, count in result.skipped.items():
        lines.append(f"{count} rows not completed: {why} (left as they are)")
    lines += [f"wrote {result.path}", f"wrote {result.report}"]
    _log_lines(loaded.dir, "complete", lines)


@app.command()
def density(
    run: RunArg = None,
    column: Annotated[
        str, typer.Option(help="The column whose law to show (a modelled column or the label).")
    ] = "",
    given: Annotated[
        list[str] | None,
        typer.Option(
            metavar="COL=VALUE", help="Fixed cells, col=value[,col=value...]; none: the column's marginal."
        ),
    ] = None,
    points: Annotated[int, typer.Option(help="Grid points over a real column's range.")] = 200,
    draws: Annotated[
        int, typer.Option(help="Importance-sampling completions per member where not exact.")
    ] = 100,
    seed: Annotated[int, typer.Option(help="Seeds the importance sampling.")] = 0,
    out: Annotated[
        Path | None, typer.Option(help="Where the table goes (.csv, .tsv, .parquet; a .png beside).")
    ] = None,
    device: DeviceOpt = "auto",
) -> None:
    """A table run's law of one column given others, p(column | given), on a grid of its values.

    Each value's p(column = v, given) and p(given) are the model's log-probabilities of those
    cells with the rest summed out: exact where every ordering generates them first, else by
    importance sampling (--draws per member). Prints the likeliest values (or a real column's
    mode and quantiles) and writes the grid as a table and a plot.

    Example: made density runs/penguins-20261121-101500 --column species --given island=Dream

    Example: made density --column body_mass_g --given species=Gentoo,sex=female
    """
    with _boundary():
        from .commands import density_run
        from .runs import load_run
        from .train import resolve_device

        if not column:
            raise _usage("name the column: --column NAME", "density")
        loaded = load_run(run, device=resolve_device(device))
        result = density_run(loaded, column, given, points, draws, seed, out)
        d = result.density
        how = "exact: every ordering generates these cells first" if d.exact else (
            f"importance sampling, {d.draws} completions per member")  # fmt: skip
        what = f"p({column} | {result.given})" if result.given else f"p({column})"
        total = f"normalised over the grid (it {'summed' if d.discrete else 'integrated'} to {d.total:.3f})"
        lines = [f"{what} from {loaded.dir}, {total} [{how}]", *result.lines]
        lines += [f"wrote {path}" for path in result.paths.values()]
        _log_lines(loaded.dir, "density", lines)


@app.command()
def score(
    run_or_file: Annotated[
        list[str],
        typer.Argument(help="[RUN] FILE: the run (default: the newest) and the table or .npz to score."),
    ],
    out: Annotated[
        Path | None,
        typer.Option(help="Where the scores go, .csv, .tsv or .parquet (default: RUN/scores/<stem>.csv)."),
    ] = None,
    flag_below: Annotated[
        float | None,
        typer.Option(help="Add an outlier column: rows below this quantile (0-1) of the validation scores."),
    ] = None,
    draws: Annotated[
        int,
        typer.Option(help="Rows with missing cells: importance-sampling completions per ensemble member."),
    ] = 100,
    seed: Annotated[int, typer.Option(help="Seeds the importance sampling of rows with missing cells.")] = 0,
    device: DeviceOpt = "auto",
) -> None:
    """Score every row of a table (or .npz) with log p(x) in nats, the file's columns copied through.

    A table's columns are matched to the training columns by name, in any order; extra columns
    (an id) are copied to the output. A row with missing cells scores log p of its observed
    cells, the rest summed out: exact where the model's orderings generate them first, else by
    importance sampling (--draws completions per member; unbiased in p), with a `missing` column
    and an `estimator` column where rows differ. With --flag-below such a row is compared with
    the validation rows with the same cells blanked. A category never seen in training scores
    -inf (flagged). A class-conditional model is scored given the file's label column, or with
    the label summed out where the file (or the row) has none; a VAE's score is its
    importance-weighted estimate (K in an importance_samples column).

    Example: made score runs/iris-20261121-101500 new.csv --out scored.parquet

    Example: made score new.csv --flag-below 0.01
    """
    with _boundary():
        from .commands import score_run
        from .runs import load_run
        from .train import resolve_device

        if len(run_or_file) > 2:
            raise _usage(f"give [RUN] FILE, not {len(run_or_file)} arguments", "score")
        run_path = Path(run_or_file[0]) if len(run_or_file) == 2 else None
        file = Path(run_or_file[-1])
        loaded = load_run(run_path, device=resolve_device(device))
        if draws < 1:
            raise BadArgument("draws", f"must be at least 1 (got {draws})")
        result = score_run(loaded, file, out, flag_below, draws=draws, seed=seed)
        rows = f"{result.rows} row" + ("s" if result.rows != 1 else "")
        lines = [
            f"scored {rows} of {file}: log p(x) mean {result.mean:.2f}, min {result.low:.2f}, "
            f"max {result.high:.2f} nats [{result.estimator}]"
        ]
        if result.gaps:
            sampled = (
                f", {result.sampled} of them by importance sampling" if result.sampled else ", all exact"
            )
            lines.append(f"{result.gaps} rows with missing cells{sampled} [{result.gaps_estimator}]")
        if result.unseen:
            lines.append(
                f"{result.unseen} rows hold a category no training row had: log p = -inf"
                + (", flagged" if flag_below is not None else "")
            )
        if result.pattern_thresholds and len(result.pattern_thresholds) > 1:
            lines.append(
                f"outlier: {result.flagged} of {rows} below the {flag_below:g}-quantile of the validation "
                "rows' log p with the same cells blanked:"
            )
            lines += [f"  {what}: {limit:.2f} nats" for what, limit in result.pattern_thresholds]
        elif result.flagged is not None:
            limit = result.threshold if result.threshold is not None else result.pattern_thresholds[0][1]  # type: ignore[index]
            lines.append(
                f"outlier: {result.flagged} of {rows} below {limit:.2f} nats, the "
                f"{flag_below:g}-quantile of the validation split's log p(x)"
            )
        _log_lines(loaded.dir, "score", [*lines, f"wrote {result.path}"])


@app.command()
def plot(
    runs: Annotated[
        list[Path] | None, typer.Argument(help="Run directories; default: the newest run under ./runs.")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            help="The PNG to write (default: RUN/plots/curves.png, or curves.png for several runs)."
        ),
    ] = None,
) -> None:
    """Draw the training curves of one or several runs into one PNG.

    Per run, one colour: the validation NLL per epoch (solid), the training loss (dashed), and
    the best epoch starred with its test NLL.

    Example: made plot

    Example: made plot runs/mnist-20261121-101500 runs/mnist-20261122-090000 --out compare.png
    """
    with _boundary():
        from .commands import plot_runs

        path = plot_runs(list(runs or []), out)
        console.print(f"wrote {path}", markup=False)


@app.command("verify-ar")
def verify_ar(
    target: Annotated[
        Path | None,
        typer.Argument(help="Run directory, checkpoint or YAML config; default: the newest run."),
    ] = None,
    points: Annotated[int, typer.Option(min=1, help="Random inputs for the Jacobian check.")] = 2,
) -> None:
    """Prove the autoregressive property of every mask: exact mask products and Jacobians.

    Per ensemble member: forbidden input-output paths in the product of the masks (must be 0),
    nonzero Jacobian entries the ordering forbids (must be 0), the share of allowed pairs that
    some path connects, inputs that reach no output and hidden units cut off from every input
    or output. For an IAF-VAE, the same for each step's MADE (with its context h), and the
    step's Jacobian dz'/dz: entries off its triangle (must be 0) and |log|det| - sum log gate|
    (must be under 1e-9 nats, checked in float64). Exits 0 when all pass, 1 otherwise.

    Example: made verify-ar configs/mnist.yaml

    Example: made verify-ar configs/iaf.yaml
    """
    with _boundary():
        from .commands import verify_target

        what, checks, run_dir = verify_target(target, points)
        if not checks.rows:  # a VAE with no IAF steps
            console.print(f"verify-ar: {what} has no {checks.unit}s to check")
            return
        marks = [Text("ok", style="green") if ok else Text("FAIL", style="red") for ok in checks.ok]
        rows = [[*row, mark] for row, mark in zip(checks.rows, marks, strict=True)]
        columns = [checks.unit, *checks.columns, "result"]
        lines = _print_table(f"verify-ar: {what}", columns, rows, caption=checks.caption)
        verdict = checks.verdict
        if checks.failed:
            verdict = f"autoregressive property violated in {checks.unit}(s) {', '.join(checks.failed)}"
        with command_log(run_dir, "verify-ar") if run_dir is not None else nullcontext():
            with _off_console():  # the table is on the console already; the log gets its lines
                for line in lines:
                    log.info(line)
            if checks.failed:
                with _off_console():  # _boundary prints it on stderr
                    log.info(verdict)
                raise CheckFailed(verdict)
            log.info(verdict)


@app.command("runs")
def list_runs_command(
    parent: Annotated[Path | None, typer.Argument(help="Where runs live (default: ./runs).")] = None,
    long: Annotated[
        bool, typer.Option("--long", "-l", help="Also how each run was made: command, versions, device.")
    ] = False,
) -> None:
    """List the runs under ./runs, oldest first, with their best validation and test NLL.

    Example: made runs

    Example: made runs --long
    """
    with _boundary():
        from .commands import list_runs
        from .runs import RUNS_DIR

        if parent is not None and not parent.is_dir():  # a typo, not an empty place
            raise UsageError(f"{parent} is not a folder of runs")
        parent = parent or RUNS_DIR
        rows = list_runs(parent)
        if not rows:
            console.print(f"no runs under {parent}/ (train one with: made train CONFIG)")
            return
        columns = ["run", "kind", "data", "model", "epochs", "best valid NLL", "test NLL"]
        table = []
        for r in rows:
            bound = "" if r["measure"] == "NLL" else f" ({r['measure']})"
            broken = "" if r["checkpoint"] in ("ok", "none") else " (!)"
            table.append([
                Path(r["run"]).name + broken,
                r["kind"],
                str(r["data"]) + ("" if r["values"] == "binary" else f" ({r['values']})"),
                r["model"],
                str(r["epochs"]),
                "-" if r["best_valid_nll"] is None else f"{r['best_valid_nll']:.2f}{bound}",
                "-" if r["test_nll"] is None else f"{r['test_nll']:.2f}{bound}",
            ])  # fmt: skip
        if long:
            for r, row in zip(rows, table, strict=True):
                console.print(row[0], style="bold", markup=False)
                fields = dict(zip(columns[1:], row[1:], strict=True))
                fields["checkpoint"] = r["checkpoint"]
                fields.update(_provenance(r["record"]))
                for key, value in fields.items():
                    console.print(f"  {key}: {value}", markup=False)
                if r["columns"]:
                    console.print(
                        "  columns:\n" + "\n".join("  " + line for line in r["columns"]), markup=False
                    )
        else:
            _print_table(f"runs under {parent}/", columns, table, optional=("model", "data"))
        for note in sorted({r["note"] for r in rows if r["note"]}):
            console.print(note)
        broken = [Path(r["run"]).name for r in rows if r["checkpoint"] not in ("ok", "none")]
        if broken:
            console.print(f"(!) checkpoints that do not load: {', '.join(broken)}; made runs --long says why")


def _provenance(record: dict[str, object]) -> dict[str, str]:
    """How a run was made, from its run.json: one entry per training or resumption."""
    out: dict[str, str] = {}
    invocations = record.get("invocations") or []  # read_record vetted the shape
    for i, entry in enumerate(invocations):
        tag = "trained" if i == 0 else f"resumed ({i})"
        commit = entry.get("git_commit")
        source = (
            "not a git checkout"
            if not commit
            else str(commit)[:12] + (" with local changes" if entry.get("git_dirty") else "")
        )
        out[f"{tag}"] = f"{entry.get('when')}: {entry.get('command') or '(from Python)'}"
        out[f"{tag} with"] = (
            f"made {entry.get('made')}, torch {entry.get('torch')}, Python {entry.get('python')}, "
            f"{entry.get('device')} x {entry.get('processes')} process(es), source {source}"
        )
        if entry.get("overrides"):
            out[f"{tag} overrides"] = " ".join(entry["overrides"])
        if entry.get("data_root"):
            out[f"{tag} data root"] = str(entry["data_root"])
    if not invocations:
        out["made by"] = "not recorded (a run from before run.json)"
    return out


def _print_table(
    title: str,
    columns: list[str],
    rows: list[list[str | Text]],
    caption: str | None = None,
    optional: tuple[str, ...] = (),
) -> list[str]:
    """Print a table whose values are never cut, and return it as plain lines (for logs).

    A rich table when every column fits the terminal at its natural width; else without the
    ``optional`` columns (dropped in that order); else one block per row, "column: value".
    Cells are plain text (a run may be named "try[lr]") or rich ``Text`` with its own style.
    """
    texts = [[cell if isinstance(cell, Text) else Text(cell) for cell in row] for row in rows]

    def width(i: int, wrap: bool) -> int:
        header = max(len(word) for word in columns[i].split()) if wrap else len(columns[i])
        return max([header, *(row[i].cell_len for row in texts)])

    keep = list(range(len(columns)))
    for name in ("", *optional):
        if name:
            keep.remove(columns.index(name))
        fits = [w for w in (False, True) if sum(width(i, w) + 3 for i in keep) + 1 <= console.width]
        wrap = fits[0] if fits else None
        if wrap is not None:
            table = Table(title=Text(title), caption=None if caption is None else Text(caption))
            for i in keep:
                numbers = all(row[i].plain[:1] in "-.0123456789" for row in texts)
                justify = "right" if i and numbers else "left"
                w = width(i, wrap)
                table.add_column(columns[i], justify=justify, min_width=w, max_width=w, overflow="fold")
            for row in texts:
                table.add_row(*(row[i] for i in keep))
            console.print(table)
            break
    else:
        console.print(title, markup=False)
        for row in texts:
            console.print(Text(f"{columns[0]}: ").append(row[0]))
            for name, cell in zip(columns[1:], row[1:], strict=True):
                console.print(Text(f"  {name}: ").append(cell))
        if caption:
            console.print(caption, markup=False)
    plain = [title]
    for row in texts:
        plain.append("  ".join(f"{name}: {cell.plain}" for name, cell in zip(columns, row, strict=True)))
    return [*plain, *([caption] if caption else [])]


def _override_hint(option: str, argv: list[str]) -> str:
    """For an unknown option that names a config key (``--epochs 3``), the override to write."""
    from .config import config_keys

    name = option.lstrip("-").partition("=")[0].replace("-", "_")
    keys = [k for k in config_keys() if k.rpartition(".")[2] == name]
    if not keys:
        return ""
    value = "VALUE"
    for i, arg in enumerate(argv):
        if arg.startswith(option + "="):
            value = arg.partition("=")[2]
        elif arg == option and i + 1 < len(argv) and not argv[i + 1].startswith("-"):
            value = argv[i + 1]
    return "; config keys are set as overrides: " + " or ".join(f"{k}={value}" for k in keys)


def main() -> None:
    """Console entry point: the parser's own usage errors become one line and exit 2, like ours."""
    try:
        code = app(standalone_mode=False, prog_name="made")
    except typer.TyperException as e:  # bad option values, unknown options, missing arguments
        if type(e).__name__ != "NoArgsIsHelpError":  # that one has printed the help already
            message = " ".join(e.format_message().split())
            ctx = getattr(e, "ctx", None)
            args = sys.argv[1:]
            command = f"made {args[0]}" if args and not args[0].startswith("-") else "made"
            where = ctx.command_path if ctx is not None else command
            unknown = type(e).__name__ == "NoSuchOption"  # typer's parser: no public class to catch
            training = where == "made train"  # the one command that takes config overrides
            hint = _override_hint(e.option_name, sys.argv[1:]) if unknown and training else ""
            typer.echo(f"error: {message}{hint} (see: {where} --help)", err=True)
        sys.exit(getattr(e, "exit_code", 2))
    except typer.Abort:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
