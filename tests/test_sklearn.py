"""made_cli.sklearn.TableDensity: a table model as a scikit-learn estimator, in scikit-learn's own
checks, pipelines, cross-validation and grid search, as an outlier detector, and on a DataFrame
with text and missing cells. Every fit is a tiny one (8 hidden units, one mask, a few epochs)."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("sklearn")
pd = pytest.importorskip("pandas")

from sklearn.model_selection import GridSearchCV, cross_val_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import check_estimator  # noqa: E402

from made_cli.runs import load_run  # noqa: E402
from made_cli.sklearn import TableDensity  # noqa: E402

TINY = {"hidden": (8,), "num_masks": 1, "epochs": 2, "random_state": 0}


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """Tiny models train fastest on one thread: two spin against each other on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _table(n: int = 150, seed: int = 0) -> pd.DataFrame:
    """Rows as users have them: a number that depends on a category, text, a constant, dates,
    and missing cells in the number and the text."""
    rng = np.random.default_rng(seed)
    species = rng.choice(["Adelie", "Chinstrap", "Gentoo"], n)
    mass = rng.normal(4000, 300, n) + (species == "Gentoo") * 1200
    frame = pd.DataFrame({
        "species": species, "mass_g": mass, "station": "south",
        "seen": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 300, n), unit="D"),
    })  # fmt: skip
    frame.loc[::9, "mass_g"] = np.nan
    frame.loc[4::11, "species"] = None
    return frame


@pytest.fixture(scope="module")
def table_model() -> tuple[TableDensity, pd.DataFrame]:
    frame = _table()
    return TableDensity(**{**TINY, "num_masks": 2, "epochs": 3}).fit(frame), frame


def test_passes_scikit_learns_estimator_checks() -> None:
    """Every check that applies passes: NaN is a missing cell (allow_nan), a model scores in
    float64 (a row's log p does not depend on the rows beside it) and pickles as its checkpoint."""
    check_estimator(TableDensity(**TINY), expected_failed_checks={}, on_skip=None)  # array API: skips itself


def test_runs_in_a_pipeline_cross_validation_and_a_grid_search() -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(120, 3)) @ np.array([[2.0, 0.5, 0.0], [0.0, 1.0, 0.3], [0.0, 0.0, 0.1]]) + 10
    scores = cross_val_score(make_pipeline(StandardScaler(), TableDensity(**TINY)), X, cv=3)
    assert scores.shape == (3,) and np.isfinite(scores).all()
    search = GridSearchCV(TableDensity(**TINY), {"hidden": [(4,), (8,)], "lr": [1e-3, 1e-2]}, cv=2).fit(X)
    assert search.best_params_["hidden"] in [(4,), (8,)]
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    assert search.score(X) == pytest.approx(search.best_estimator_.score(X))


def test_flags_far_outliers_of_a_gaussian_blob() -> None:
    rng = np.random.default_rng(0)
    angles = np.linspace(0, 2 * np.pi, 6, endpoint=False)
    X = np.r_[rng.normal(size=(300, 2)), 8 * np.c_[np.cos(angles), np.sin(angles)]]
    far = np.arange(300, 306)
    est = TableDensity(**{**TINY, "epochs": 20, "lr": 1e-2, "contamination": 0.05}).fit(X)
    assert (est.predict(X)[far] == -1).all()
    assert set(np.argsort(est.decision_function(X))[: len(far)]) == set(far)
    assert abs((est.predict(X) == -1).sum() - 0.05 * len(X)) <= 1  # the contamination share of the rows
    np.testing.assert_allclose(est.decision_function(X), est.score_samples(X) - est.offset_)
    assert (est.fit_predict(X) == est.predict(X)).all()


def test_a_dataframe_with_text_and_missing_cells(table_model: tuple[TableDensity, pd.DataFrame]) -> None:
    """It keeps its columns' names and types; rows with missing cells score log p of their observed
    cells, exactly as run_.score computes it; an unseen category scores -inf; X is left as it was."""
    est, frame = table_model
    before = frame.copy()
    scores = est.score_samples(frame)
    pd.testing.assert_frame_equal(frame, before)
    assert list(est.feature_names_in_) == list(frame.columns) and est.n_features_in_ == 4
    assert set(est.run_.table_schema.names) == {"species", "mass_g", "seen"}  # the constant is left out
    assert np.isfinite(scores).all()
    np.testing.assert_array_equal(scores, est.run_.score(frame)["log_prob"].to_numpy())
    assert est.score(frame) == pytest.approx(scores.mean())
    unseen = frame.head(3).assign(species=["Emperor", "Adelie", "Adelie"])
    assert est.score_samples(unseen)[0] == -np.inf and np.isfinite(est.score_samples(unseen)[1:]).all()
    assert est.predict(unseen)[0] == -1
    again = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(again.score_samples(frame), scores)


def test_samples_have_the_fitted_columns(table_model: tuple[TableDensity, pd.DataFrame]) -> None:
    est, frame = table_model
    drawn = est.sample(20, random_state=3)
    assert list(drawn.columns) == list(frame.columns) and len(drawn) == 20
    assert set(drawn["species"]) <= {"Adelie", "Chinstrap", "Gentoo"} and (drawn["station"] == "south").all()
    assert drawn["mass_g"].notna().all()
    pd.testing.assert_frame_equal(est.sample(20, random_state=3), drawn)  # seeded
    X = np.c_[np.random.default_rng(2).normal(size=(60, 2)), np.full(60, 7.0)]
    arrays = TableDensity(**TINY).fit(X).sample(5, random_state=0)
    assert isinstance(arrays, np.ndarray) and arrays.shape == (5, 3) and (arrays[:, 2] == 7.0).all()


def test_fits_quietly_and_keeps_the_run_when_asked(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A kept run has its data and log beside it and loads like any other (scoring complete rows
    alike; it scores in float32); the caller's torch generator is as it was."""
    frame = _table(60)
    state = torch.get_rng_state()
    est = TableDensity(**TINY, run_dir=tmp_path / "runs").fit(frame)
    assert capsys.readouterr() == ("", "")
    assert torch.equal(torch.get_rng_state(), state)
    (run,) = (tmp_path / "runs").iterdir()
    assert run == est.run_.dir and (run / "TableDensity.parquet").is_file()
    assert "columns:" in (run / "logs" / "train.log").read_text()
    complete = frame.notna().all(axis=1).to_numpy()
    loaded = load_run(run).score(frame)["log_prob"].to_numpy()
    np.testing.assert_allclose(loaded[complete], est.score_samples(frame)[complete], rtol=1e-5)


def test_refusals_are_value_errors_in_one_line() -> None:
    frame = _table(30)
    with pytest.raises(ValueError, match=r"at least 3 rows.*\(got 2 samples\)"):
        TableDensity(**TINY).fit(frame.head(2))
    with pytest.raises(ValueError, match=r"^model\.hidden sizes must be at least 1 \(got \[0\]\)$"):
        TableDensity(**{**TINY, "hidden": (0,)}).fit(frame)
    with pytest.raises(ValueError, match=r"^<data> has no column to model"):
        TableDensity(**TINY).fit(np.ones((10, 2)))
    with pytest.raises(ValueError, match="contamination"):
        TableDensity(**TINY, contamination=0.7).fit(frame)
    with pytest.raises(ValueError, match=r"unknown key 'train\.bogus'"):
        TableDensity(**TINY, overrides=("train.bogus=1",)).fit(frame)
