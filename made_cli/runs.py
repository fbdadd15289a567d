"""Run directories: atomic writes, finding runs, loading a run, and the record of how it was made."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

from .checkpoint import load_checkpoint, model_from_checkpoint
from .config import Config, config_to_yaml
from .errors import UsageError
from .interface import DensityModel
from .tables import TableSchema

__all__ = [
    "LOGGER",
    "SCHEMA_FILE",
    "Run",
    "atomic_write_bytes",
    "atomic_write_text",
    "command_log",
    "discard_if_empty",
    "find_runs",
    "load_run",
    "new_run_dir",
    "read_record",
    "record_invocation",
    "remove_stale_temps",
    "resolve_run",
    "write_config",
]

RUNS_DIR = Path("runs")
SCHEMA_FILE = "schema.json"  # a table run's columns and their laws, as the checkpoint keeps them
_UMASK = os.umask(0)
os.umask(_UMASK)


# -- atomic writes ---------------------------------------------------------------------------
def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the usual mode
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


# -- run directories -------------------------------------------------------------------------
def new_run_dir(name: str, parent: Path = RUNS_DIR) -> Path:
    """A fresh ``<parent>/<name>-<timestamp>`` directory (suffixed if that second is taken)."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    parent.mkdir(parents=True, exist_ok=True)
    for i in range(1000):
        path = parent / (f"{name}-{stamp}" + (f"-{i}" if i else ""))
        if _claim(path):
            return path
    raise UsageError(f"cannot create a run directory under {parent}")


def remove_stale_temps(run_dir: Path) -> None:
    """Delete temp files that an atomic write killed mid-way left behind.

    Only the run's writer (training, or resuming it) calls this: a reader would delete the
    temp file of a training that is still going.
    """
    for tmp in run_dir.rglob(".*.tmp"):
        tmp.unlink(missing_ok=True)


def _claim(path: Path) -> bool:
    """Create ``path``; False if another run (or process) has it already."""
    try:
        path.mkdir()
    except FileExistsError:
        return False
    return True


def find_runs(parent: Path = RUNS_DIR) -> list[Path]:
    """Run directories under ``parent``, oldest first (by when their config was written)."""
    if not parent.is_dir():
        return []
    runs = [p for p in parent.iterdir() if (p / "config.yaml").is_file()]
    return sorted(runs, key=lambda p: ((p / "config.yaml").stat().st_mtime_ns, p.name))


def _run_dir_of(checkpoint: Path) -> Path:
    """The run a checkpoint belongs to; a loose checkpoint's outputs go beside it."""
    if checkpoint.parent.name == "checkpoints" and (checkpoint.parent.parent / "config.yaml").exists():
        return checkpoint.parent.parent
    return checkpoint.parent


def has_checkpoint(run_dir: Path) -> bool:
    return any((run_dir / "checkpoints").glob("*.pt"))


def discard_if_empty(run_dir: Path, parent_too: bool = False) -> None:
    """Remove a run directory that holds no checkpoint (its training failed before saving), and
    with ``parent_too`` (the caller made ./runs for it) that parent if it is left empty."""
    if run_dir.is_dir() and not has_checkpoint(run_dir):
        shutil.rmtree(run_dir, ignore_errors=True)
        parent = run_dir.parent
        if parent_too and not parent.is_symlink() and parent.is_dir() and not any(parent.iterdir()):
            with contextlib.suppress(OSError):  # in use by another run starting: leave it
                parent.rmdir()


def resolve_run(run: str | Path | None, parent: Path = RUNS_DIR) -> Path:
    """The run directory a user named, or the newest under ./runs when they named none."""
    if run is None:
        runs = [r for r in find_runs(parent) if has_checkpoint(r)]
        if not runs:
            raise UsageError(f"no runs under {parent}/; train one first with: made train CONFIG")
        return runs[-1]
    path = Path(run)
    if path.is_file() and path.suffix == ".pt":
        return _run_dir_of(path)
    if not path.is_dir():
        raise UsageError(f"run not found: {path}")
    if not (path / "config.yaml").is_file():
        raise UsageError(f"{path} is not a run directory (no config.yaml)")
    return path


@dataclass
class Run:
    """A trained model with the config and data facts it was trained with."""

    dir: Path
    config: Config
    model: DensityModel
    checkpoint: dict[str, Any]

    @property
    def image_shape(self) -> tuple[int, int] | None:
        shape = self.checkpoint.get("image_shape")
        return tuple(shape) if shape else None  # type: ignore[return-value]

    @property
    def table_schema(self) -> TableSchema | None:
        """The schema of the table the run was trained on (None for other data)."""
        record = self.checkpoint.get("table")
        return None if record is None else TableSchema.from_dict(record["schema"])

    # -- a table run's questions, on a pandas DataFrame or a pyarrow Table ----------------------
    def score(self, data: Any, draws: int = 100, seed: int = 0) -> Any:
        """``data`` with ``log_prob`` (nats), ``missing`` (cells lacked) and ``estimator`` columns
        added, as `made score` computes them: a row with missing cells gets log p of its observed
        cells, a row with a category never seen in training -inf. Returns ``data``'s kind."""
        from .queries import score_table

        table, pandas = _arrow_table(data)
        scored, _ = score_table(self, table, _IN_MEMORY, draws, seed)
        import pyarrow as pa

        table = table.append_column("log_prob", pa.array(scored.log_prob))
        table = table.append_column("missing", pa.array(scored.missing))
        table = table.append_column("estimator", pa.array(scored.estimators()))
        return table.to_pandas() if pandas else table

    def complete(
        self,
        data: Any,
        per_row: int = 1,
        steps: int | None = None,
        columns: Sequence[str] = (),
        seed: int = 0,
    ) -> Any:
        """``data`` with every missing cell of the modelled columns (and every cell of ``columns``)
        drawn from the model's p(missing | observed), as `made complete RUN FILE` does; with
        ``per_row`` K > 1, each row K times and an ``imputation`` column. Returns ``data``'s kind."""
        from .queries import complete_table

        table, pandas = _arrow_table(data)
        done = complete_table(self, table, _IN_MEMORY, per_row, steps, columns, seed)
        return done.table.to_pandas() if pandas else done.table

    def sample(
        self,
        n: int,
        given: Mapping[str, Any] | None = None,
        seed: int = 0,
        steps: int | None = None,
        pandas: bool = True,
    ) -> Any:
        """``n`` rows of the table drawn from the model, given the cells ``given`` names ({column:
        value}: modelled, label or context columns) as `made sample --given` draws them; a pandas
        DataFrame (``pandas=False``: a pyarrow Table) of the columns' own types."""
        from .queries import draw_rows

        schema = self.table_schema
        if schema is None:
            raise UsageError(f"the model in {self.dir} was not trained on a table")
        x, drawn_given, _ = draw_rows(self, n, seed, given=dict(given or {}), steps=steps)
        table = schema.decode(x, drawn_given.labels, drawn_given.context)
        return table.to_pandas() if pandas else table

    def density(
        self,
        column: str,
        given: Mapping[str, Any] | None = None,
        points: int = 200,
        draws: int = 100,
        seed: int = 0,
        pandas: bool = True,
    ) -> Any:
        """p(column | given) on a grid of the column's values, as `made density` computes it:
        the values, ``probability`` or ``density``, and each value's ``measure``."""
        from .queries import column_density, parse_given

        result = column_density(self, column, parse_given(self, dict(given or {})), points, draws, seed)
        return result.table.to_pandas() if pandas else result.table


_IN_MEMORY = Path("<data>")  # what error messages name for rows given from Python


def _arrow_table(data: Any) -> tuple[Any, bool]:
    """(a pyarrow Table of ``data``, whether it was a pandas DataFrame)."""
    import pyarrow as pa

    from .tables import normalise_table

    if isinstance(data, pa.Table):
        return normalise_table(data, _IN_MEMORY), False
    if type(data).__name__ == "DataFrame" and hasattr(data, "columns"):
        return normalise_table(pa.Table.from_pandas(data, preserve_index=False), _IN_MEMORY), True
    raise UsageError(
        f"give a pandas DataFrame or a pyarrow Table of the run's columns, not {type(data).__name__}"
    )


def load_run(path: str | Path | None = None, which: str = "best", device: str | torch.device = "cpu") -> Run:
    """Load a run directory (its best checkpoint, else last) or a checkpoint file."""
    p = Path(path) if path is not None else None
    if p is not None and p.is_file() and p.suffix == ".pt":
        ckpt_path, run_dir = p, _run_dir_of(p)
    else:
        run_dir = resolve_run(p)
        ckpt_path = run_dir / "checkpoints" / f"{which}.pt"
        if not ckpt_path.exists() and which == "best":
            ckpt_path = run_dir / "checkpoints" / "last.pt"
    state = load_checkpoint(ckpt_path, map_location=device)
    config, model = model_from_checkpoint(state, ckpt_path, device)
    return Run(dir=run_dir, config=config, model=model, checkpoint=state)


def write_config(run_dir: Path, config: Config) -> None:
    atomic_write_text(run_dir / "config.yaml", config_to_yaml(config))


# -- how a run was made ----------------------------------------------------------------------
def _git_commit() -> tuple[str | None, bool | None]:
    """(commit, has local changes) of the checkout made runs from; (None, None) if not one."""
    source = Path(__file__).resolve().parent.parent
    git = shutil.which("git")
    if git is None or not (source / ".git").exists():
        return None, None

    # no index lock taken in the user's checkout, and no repository named by the environment
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}

    def ask(*args: str) -> str | None:
        command = [git, "--no-optional-locks", "-C", str(source), *args]
        try:  # fixed arguments, no shell
            done = subprocess.run(command, capture_output=True, text=True, timeout=5, env=env)  # noqa: S603
        except (OSError, subprocess.SubprocessError):  # git hung or broke: the run goes on without it
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = ask("rev-parse", "HEAD")
    if not commit:
        return None, None
    status = ask("status", "--porcelain", "--untracked-files=no")
    return commit, None if status is None else bool(status)


def record_invocation(
    run_dir: Path,
    command: str | None,
    overrides: list[str],
    device: torch.device,
    processes: int,
    data_root: str | None,
) -> None:
    """Append how this training (or resumption) was started to ``<run>/run.json``; ``command``
    is the command line (None: called from Python)."""
    from . import __version__

    commit, dirty = _git_commit()
    entry = {
        "when": datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": command,
        "overrides": list(overrides),
        "made": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": str(device),
        "processes": processes,
        "git_commit": commit,
        "git_dirty": dirty,
        "data_root": data_root,
    }
    record = read_record(run_dir)
    record["invocations"] = [*record.get("invocations", []), entry]
    atomic_write_text(run_dir / "run.json", json.dumps(record, indent=2) + "\n")


def read_record(run_dir: Path) -> dict[str, Any]:
    """``<run>/run.json`` (how the run was made): ``invocations``, a list of dicts; empty when
    the run has none (from before run.json) or it is unreadable or not of that shape."""
    try:
        record = json.loads((run_dir / "run.json").read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return {}
    invocations = record.get("invocations") if isinstance(record, dict) else None
    if not isinstance(invocations, list) or not all(isinstance(e, dict) for e in invocations):
        return {}
    return {"invocations": invocations}


LOGGER = "made_cli"  # every module's logger is below it: what is said, the commands keep


@contextmanager
def command_log(run_dir: Path, command: str) -> Iterator[Path]:
    """While a command runs, append what the package logs to ``<run>/logs/<command>.log``, a
    timestamped line each; yields the log's path."""
    path = run_dir / "logs" / f"{command}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    logger = logging.getLogger(LOGGER)
    logger.addHandler(handler)
    try:
        yield path
    finally:
        logger.removeHandler(handler)
        handler.close()
