"""A MADE table model as a scikit-learn density estimator and outlier detector.

``TableDensity`` trains what ``made train FILE`` trains (the same config, Trainer and early
stopping) on the rows it is given, so that a table model drops into ``Pipeline``,
``cross_val_score``, ``GridSearchCV`` and outlier-detection benchmarks unchanged. A pandas
DataFrame keeps its columns' names and types (text, dates, booleans, numbers); a 2-D array's
columns are named x0..x{d-1}. Columns are typed as made types a table's (``tables.py``): numbers
with at most 10 distinct values are categorical, so a value never seen in training scores -inf;
constants, identifiers and empty columns are left out of the density. NaN is a missing cell: it
is modelled, and a row with missing cells scores log p of its observed cells.

Needs the ``sklearn`` extra: ``pip install 'made-cli[sklearn]'``.
"""

from __future__ import annotations

import io
import json
import logging
import math
import numbers
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator, OutlierMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from .errors import Interrupted, MadeError

__all__ = ["TableDensity"]

_NAME = "TableDensity"  # the data file's stem, hence the run's name (runs/TableDensity-<time>)
_MIN_ROWS = 3  # the table loader holds out one row or more each for validation and test
_IN_MEMORY = Path("<data>")  # what made's messages name rows given from Python by, as runs.Run does


@contextmanager
def _made_errors(scratch: Path | None = None) -> Iterator[None]:
    """made's one-line errors on bad data or settings as the ValueError scikit-learn expects,
    naming the rows ``<data>`` as made does for rows given from Python (not the ``scratch`` file
    they were written to, gone by then); a training stopped by Ctrl-C as the KeyboardInterrupt
    it was."""
    try:
        yield
    except Interrupted as e:
        raise KeyboardInterrupt(str(e)) from e
    except MadeError as e:
        message = str(e) if scratch is None else str(e).replace(str(scratch), str(_IN_MEMORY))
        raise ValueError(message) from e


@contextmanager
def _quiet(run_dir: Path | None) -> Iterator[None]:
    """Training's log lines (a dozen per fit, hundreds in a grid search) off the console and out
    of the user's logging; kept in ``<run>/logs/train.log`` when the run is kept, as the CLI does."""
    from .runs import LOGGER, command_log

    logger = logging.getLogger(LOGGER)
    saved = logger.handlers[:], logger.propagate, logger.level
    logger.handlers.clear()
    logger.propagate = False
    logger.setLevel(logging.INFO)
    try:
        with command_log(run_dir, "train") if run_dir is not None else nullcontext():
            yield
    finally:
        logger.handlers[:], logger.propagate = saved[0], saved[1]
        logger.setLevel(saved[2])


def _own_generator(device: torch.device) -> Any:
    """Torch's global generator (and the device's), restored on leaving."""
    return torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else [])


def _seed(random_state: Any) -> int:
    """An int is made's seed as it is (0 trains as ``made train FILE`` does); None or a
    RandomState draws one, as scikit-learn's ``random_state`` does."""
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        return int(random_state)
    return int(check_random_state(random_state).randint(np.iinfo(np.int32).max))


def _plain(value: Any) -> Any:
    """A parameter as JSON takes it (numpy scalars and arrays, tuples), for a dotted override."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (tuple, list, np.ndarray)):
        return [_plain(v) for v in value]
    return value


def _arrow(frame: pd.DataFrame) -> Any:
    """The rows as made reads a table: a pyarrow Table of the columns' own types."""
    import pyarrow as pa

    from .tables import normalise_table

    return normalise_table(pa.Table.from_pandas(frame, preserve_index=False), _IN_MEMORY)


@dataclass(frozen=True)
class _StoredRun:
    """A fitted ``Run`` as pickle keeps it: its checkpoint's bytes (a MADE module does not pickle)."""

    dir: str
    device: str
    checkpoint: bytes

    def load(self) -> Any:
        from .checkpoint import model_from_checkpoint
        from .runs import Run

        device = self.device if not self.device.startswith("cuda") or torch.cuda.is_available() else "cpu"
        state = torch.load(io.BytesIO(self.checkpoint), map_location=device, weights_only=True)
        with _own_generator(torch.device(device)):
            config, model = model_from_checkpoint(state, Path(self.dir), device)
        return _in_float64(Run(dir=Path(self.dir), config=config, model=model, checkpoint=state))


def _in_float64(run: Any) -> Any:
    """The run with its model in float64: trained in float32, it would score a row differently
    (by a float32 rounding) in batches of different sizes; in float64 a row's log p is the same
    whatever rows are scored with it."""
    run.model.double()
    return run


class TableDensity(OutlierMixin, BaseEstimator):
    """A MADE density of a table's rows, trained as ``made train FILE`` trains it, that scores
    rows (log-likelihood in nats), samples them and flags the least likely as outliers.

    Parameters, each setting a key of the config (None: the config's own default):

    - ``hidden``, ``num_masks``, ``components``: model.hidden, model.num_masks (the ensemble of
      orderings), model.components (the Gaussians of each real column's mixture).
    - ``lr``, ``epochs``, ``batch_size``, ``patience``: train.*; training stops early on a
      validation split of the rows (10%, held out as ``made train`` holds it out).
    - ``random_state``: seed and data.seed (the model's draws and the split); None draws one.
    - ``overrides``: further dotted settings as ``made train FILE KEY=VALUE`` takes them, e.g.
      ``("train.weight_decay=1e-4", "data.max_levels=50")``.

    and of the estimator: ``contamination``, the share of training rows ``predict`` calls
    outliers, in (0, 0.5]; ``run_dir``, a folder to keep each fit's run in (resumable with
    ``made train --resume``, readable by every ``made`` command; None: a temporary one, removed
    after fit, the model kept in memory); ``device``, cpu, cuda or auto; ``draws``, the
    importance samples that score a row with missing cells where its orderings need them.

    Attributes: ``run_``, the fitted ``runs.Run`` (its ``score``, ``sample``, ``complete`` and
    ``density`` answer in the table's own terms; its model in float64, its ``dir`` gone unless
    ``run_dir`` kept it); ``offset_``; ``n_features_in_``; and for a DataFrame with string
    column names, ``feature_names_in_``.
    """

    def __init__(
        self,
        hidden: int | Sequence[int] | None = (256,),
        num_masks: int | None = 10,
        components: int | None = None,
        lr: float | None = None,
        epochs: int | None = 400,
        batch_size: int | None = None,
        patience: int | None = None,
        contamination: float = 0.1,
        random_state: int | np.random.RandomState | None = None,
        run_dir: str | Path | None = None,
        device: str = "cpu",
        draws: int = 100,
        overrides: Sequence[str] = (),
    ) -> None:
        self.hidden = hidden
        self.num_masks = num_masks
        self.components = components
        self.lr = lr
        self.epochs = epochs
        self.batch_size = batch_size
        self.patience = patience
        self.contamination = contamination
        self.random_state = random_state
        self.run_dir = run_dir
        self.device = device
        self.draws = draws
        self.overrides = overrides

    # -- fitting ---------------------------------------------------------------------------
    def fit(self, X: Any, y: Any = None) -> TableDensity:
        """Train a table model on the rows of ``X`` (``y`` is ignored) and set ``offset_`` at
        the ``contamination`` quantile of their scores."""
        self._check_parameters()
        frame = self._frame(X, reset=True)
        if len(frame) < _MIN_ROWS:
            n = len(frame)
            raise ValueError(
                f"{_NAME} needs at least {_MIN_ROWS} rows, one each for training, validation and "
                f"test (got {n} sample{'' if n == 1 else 's'})"
            )
        run = self._train(frame, _seed(self.random_state))
        self.run_ = run  # the rest follows from the rows and the run, once the training has succeeded
        self._columns = list(X.columns) if isinstance(X, pd.DataFrame) else None  # what samples are named
        self._numeric = all(pd.api.types.is_numeric_dtype(t) for t in frame.dtypes)
        modelled = set(self.run_.table_schema.names)
        self._fill = {name: self._only_value(frame[name]) for name in frame.columns if name not in modelled}
        self.offset_ = float(np.percentile(self._scores(frame), 100.0 * self.contamination))
        return self

    def _check_parameters(self) -> None:
        """What made's config does not check, checked before a training is spent."""
        share, draws = self.contamination, self.draws
        if isinstance(share, bool) or not isinstance(share, numbers.Real) or not 0.0 < share <= 0.5:
            raise ValueError(f"contamination must be a number in (0, 0.5] (got {share!r})")
        if isinstance(draws, bool) or not isinstance(draws, numbers.Integral) or draws < 1:
            raise ValueError(f"draws must be an integer >= 1 (got {draws!r})")

    @staticmethod
    def _only_value(column: pd.Series) -> Any:
        """A left-out column's value for samples: its constant, or missing."""
        values = column.dropna().unique()
        return values[0] if len(values) == 1 else None

    def _overrides(self, seed: int) -> list[str]:
        given = {
            "model.hidden": self.hidden, "model.num_masks": self.num_masks,
            "model.components": self.components, "train.lr": self.lr, "train.epochs": self.epochs,
            "train.batch_size": self.batch_size, "train.patience": self.patience,
            "seed": seed, "data.seed": seed,
        }  # fmt: skip
        extra = [self.overrides] if isinstance(self.overrides, str) else list(self.overrides)
        return [f"{key}={json.dumps(_plain(v))}" for key, v in given.items() if v is not None] + extra

    def _train(self, frame: pd.DataFrame, seed: int) -> Any:
        """Write the rows as Parquet and train on them as ``made train FILE`` would, in the
        kept run's folder (its data stays with it, for resuming) or in a temporary one."""
        import pyarrow.parquet as pq
        from rich.console import Console

        from .config import config_from_dict, table_config
        from .runs import discard_if_empty, load_run, new_run_dir
        from .train import resolve_device, train

        with tempfile.TemporaryDirectory(prefix="made-sklearn-") as scratch:
            kept = self.run_dir is not None
            path = Path(scratch) / f"{_NAME}.parquet"
            with _made_errors(None if kept else path):
                device = resolve_device(self.device)
                run = new_run_dir(_NAME, Path(self.run_dir).expanduser()) if kept else Path(scratch) / "run"
                path = run / path.name if kept else path
                try:
                    pq.write_table(_arrow(frame), path)
                    overrides = self._overrides(seed)
                    config = config_from_dict(table_config(path, overrides), overrides)
                    # training seeds torch's generator, and building a model draws from it: the
                    # caller's is left as it was
                    with _quiet(run if kept else None), _own_generator(device):
                        train(config, run, device, Console(file=io.StringIO()), overrides=overrides)
                        loaded = load_run(run, device=device)
                finally:
                    if kept:  # a failed training leaves no run behind, as the CLI's does not
                        discard_if_empty(run)
        loaded.checkpoint.pop("optimizer", None)  # Adam's state: for resuming, which reads the file
        return _in_float64(loaded)

    # -- the rows as made takes them ---------------------------------------------------------
    def _names(self, n: int) -> list[str]:
        names = getattr(self, "feature_names_in_", None)
        return [str(v) for v in names] if names is not None else [f"x{i}" for i in range(n)]

    def _frame(self, X: Any, reset: bool) -> pd.DataFrame:
        """``X`` as a DataFrame of the fitted columns' names, validated as scikit-learn validates
        (feature names and counts; NaN allowed, infinity refused), never modified. A DataFrame
        keeps its columns' types; an array's numbers stay numbers, and an object array of text
        keeps its text (a text column)."""
        if isinstance(X, pd.DataFrame):
            validate_data(self, X, skip_check_array=True, reset=reset)
            if X.shape[1] == 0:
                raise ValueError(f"0 feature(s) (shape={X.shape}) while a minimum of 1 is required.")
            return X.set_axis(self._names(X.shape[1]), axis=1)
        try:
            array = validate_data(self, X, dtype="numeric", ensure_all_finite="allow-nan", reset=reset)
        except ValueError as numeric:  # text: kept as text, its number columns checked by made
            array = validate_data(self, X, dtype=None, ensure_all_finite=False, reset=reset)
            if not any(isinstance(v, str) for v in array.ravel()):  # no text: the numbers' own fault
                raise numeric from None
        return pd.DataFrame(array, columns=self._names(array.shape[1]), copy=False)

    def _scores(self, frame: pd.DataFrame) -> np.ndarray:
        from .queries import score_table

        with _made_errors():
            scored, _ = score_table(self.run_, _arrow(frame), _IN_MEMORY, self.draws, seed=0)
        return np.asarray(scored.log_prob, dtype=np.float64)

    # -- what a density answers ------------------------------------------------------------
    def score_samples(self, X: Any) -> np.ndarray:
        """log p(x) per row in nats, as ``run_.score`` computes it: -inf for a category never
        seen in training, and for a row with NaN, log p of its observed cells (exact where every
        ordering generates them first, else importance sampling with ``draws`` completions,
        seeded: the same rows score the same, though such a row's estimate depends on the rows
        with gaps scored before it in the call)."""
        check_is_fitted(self)
        return self._scores(self._frame(X, reset=False))

    def score(self, X: Any, y: Any = None) -> float:
        """The mean log-likelihood per row (nats): what ``GridSearchCV`` and ``cross_val_score``
        maximise."""
        return float(np.mean(self.score_samples(X)))

    def decision_function(self, X: Any) -> np.ndarray:
        """``score_samples - offset_``: negative for the rows ``predict`` calls outliers."""
        return self.score_samples(X) - self.offset_

    def predict(self, X: Any) -> np.ndarray:
        """-1 for an outlier (below the ``contamination`` quantile of the training rows' log p),
        +1 for an inlier."""
        return np.where(self.decision_function(X) >= 0, 1, -1)

    def sample(self, n_samples: int = 1, random_state: int | np.random.RandomState | None = None) -> Any:
        """``n_samples`` rows drawn from the model (seeded by ``random_state``): a DataFrame of
        the fitted columns if fitted on one, else an array, as ``KernelDensity.sample`` gives.
        A column left out of the density (a constant) gets its value, or a missing cell."""
        check_is_fitted(self)
        if isinstance(n_samples, bool) or not isinstance(n_samples, numbers.Integral) or n_samples < 0:
            raise ValueError(f"n_samples must be an integer >= 0 (got {n_samples!r})")
        with _made_errors():  # none asked: the first row's columns, no rows
            drawn = self.run_.sample(max(int(n_samples), 1), seed=_seed(random_state)).iloc[: int(n_samples)]
        names = self._names(self.n_features_in_)
        columns = {name: drawn[name] if name in drawn else self._fill[name] for name in names}
        frame = pd.DataFrame(columns, index=range(len(drawn)))
        if self._columns is not None:
            return frame.set_axis(self._columns, axis=1)
        if self._numeric:
            return frame.to_numpy(dtype=np.float64, na_value=math.nan)
        return frame.to_numpy(dtype=object)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True  # a missing cell: modelled, and scored by its observed cells
        return tags

    # -- pickling --------------------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__())
        run = state.get("run_")
        if run is not None:
            from .checkpoint import checkpoint_bytes

            device = str(next(run.model.parameters()).device)
            state["run_"] = _StoredRun(str(run.dir), device, checkpoint_bytes(run.checkpoint))
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        if isinstance(state.get("run_"), _StoredRun):
            state = {**state, "run_": state["run_"].load()}
        super().__setstate__(state)
