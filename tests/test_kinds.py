"""The contract every registered model kind keeps (kinds.KINDS), checked on the small config each
kind names (``Kind.contract``): its config sections, a density that normalises (a 2-D grid, or
every binary vector), samples that follow it (total variation), for a bijection
inverse(transform(x)) = x and its log-determinant against autograd's, fast sampling equal to the
naive oracle, verify-ar passing and failing on a layer with a forbidden connection switched on,
and save, load and resume.

A new kind joins these tests by being registered; a kind that fails them cannot land."""

from __future__ import annotations

import copy
import inspect
import itertools
import json
from pathlib import Path

import pytest
import torch

from made_cli.config import Config, config_to_dict, config_to_yaml, load_config
from made_cli.data import load_dataset
from made_cli.kinds import KINDS, Kind
from made_cli.runs import load_run
from made_cli.train import resume, train

from .conftest import tamper

NAMES = list(KINDS)
TRAINING = ("data.size=600", "train.batch_size=50", "train.lr=0.01", "train.patience=5", "train.epochs=3")


def _config(kind: Kind, *extra: str) -> Config:
    return load_config(None, [f"model.kind={kind.name}", *kind.contract, *TRAINING, *extra])


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Each kind trained on its contract config for three epochs (trained weights: an untrained
    flow is the identity, which would hide mistakes), as loaded back from its run."""
    out = {}
    for name in NAMES:
        run = tmp_path_factory.mktemp(name) / "run"
        train(_config(KINDS[name]), run)
        out[name] = (load_run(run), run)
    return out


def _model(trained: dict, name: str):
    return trained[name][0].model.eval()


def _is_binary(cfg: Config) -> bool:
    return cfg.data.values == "binary"


def _grid(model, cfg: Config, per_side: int) -> tuple[torch.Tensor, float, float, float]:
    """(points (n^2, 2), cell area, low, high): a square grid well beyond the data's range."""
    train_rows = load_dataset(cfg.data).train
    centre, spread = float(train_rows.mean()), float(train_rows.std())
    low, high = centre - 8 * spread, centre + 8 * spread
    side = low + (torch.arange(per_side, dtype=torch.float32) + 0.5) * (high - low) / per_side
    xx, yy = torch.meshgrid(side, side, indexing="ij")
    return torch.stack([xx.reshape(-1), yy.reshape(-1)], 1), ((high - low) / per_side) ** 2, low, high


@torch.no_grad()
def _probabilities(model, cfg: Config) -> tuple[torch.Tensor, torch.Tensor]:
    """(points, probability of each): every binary vector, or the cells of a 2-D grid."""
    if _is_binary(cfg):
        x = torch.tensor(list(itertools.product([0.0, 1.0], repeat=model.features)))
        return x, model.log_prob(x).exp()
    grid, cell, _, _ = _grid(model, cfg, 400)
    return grid, torch.cat([model.log_prob(part).exp() for part in grid.split(20000)]) * cell


@pytest.mark.parametrize("name", NAMES)
def test_a_kind_reads_its_own_sections_and_describes_itself(trained, name: str) -> None:
    kind = KINDS[name]
    cfg = _config(kind)
    saved = config_to_dict(cfg)
    for section in kind.sections:
        assert section in saved and isinstance(getattr(cfg, section), kind.sections[section])
    others = {s for k in KINDS.values() for s in k.sections} - set(kind.sections)
    assert not others & set(saved), "a run keeps only its own kind's sections"
    assert load_config(None, []).__class__ is cfg.__class__
    assert yaml_round_trip(cfg) == cfg
    run = trained[name][0]
    assert kind.summary(run.checkpoint["config"]) and kind.describe(cfg, run.model)


def yaml_round_trip(cfg: Config) -> Config:
    import yaml

    from made_cli.config import config_from_dict

    return config_from_dict(yaml.safe_load(config_to_yaml(cfg)))


@pytest.mark.parametrize("name", NAMES)
def test_the_density_sums_or_integrates_to_one(trained, name: str) -> None:
    model, cfg = _model(trained, name), _config(KINDS[name])
    _, p = _probabilities(model, cfg)
    # a VAE's log p(x) is an importance-sampled estimate (unbiased in p): within its noise
    assert abs(float(p.sum()) - 1) < (0.03 if _is_binary(cfg) else 0.01), float(p.sum())


def _total_variation(model, cfg: Config, x: torch.Tensor) -> float:
    """Between rows ``x`` and the model: over every binary vector, or over 20 x 20 bins of the
    grid (each bin 20 x 20 cells) and the one bin beyond it."""
    if _is_binary(cfg):
        points, p = _probabilities(model, cfg)
        freq = (x[:, None, :] == points[None]).all(-1).double().mean(0)
        return 0.5 * float((freq - p.double() / p.sum()).abs().sum())
    bins = 20
    grid, cell, low, high = _grid(model, cfg, bins * 20)
    with torch.no_grad():
        p = torch.cat([model.log_prob(part).exp() for part in grid.split(20000)]).double() * cell
    mass = p.view(bins, 20, bins, 20).sum((1, 3))
    inside = ((x >= low) & (x < high)).all(1)
    idx = ((x[inside] - low) / (high - low) * bins).long().clamp(0, bins - 1)
    counts = torch.zeros(bins, bins, dtype=torch.float64)
    counts.index_put_((idx[:, 0], idx[:, 1]), torch.ones(len(idx), dtype=torch.float64), accumulate=True)
    beyond = abs((1 - float(inside.double().mean())) - (1 - float(mass.sum())))
    return 0.5 * (float((counts / x.shape[0] - mass).abs().sum()) + beyond)


@pytest.mark.parametrize("name", NAMES)
def test_samples_follow_the_density(trained, name: str) -> None:
    """30000 draws: the kinds' draws measured 0.010-0.019 from their densities (sampling noise);
    draws of a moved density give over 0.3."""
    model, cfg = _model(trained, name), _config(KINDS[name])
    x = model.draw(30000, torch.Generator().manual_seed(5))
    assert _total_variation(model, cfg, x) < 0.03  # measured: 0.010-0.019
    moved = 1 - x if _is_binary(cfg) else x + 0.5 * x.std(0)
    assert _total_variation(model, cfg, moved) > 0.1  # the check can tell


@pytest.mark.parametrize("name", NAMES)
def test_a_bijection_inverts_its_transform_and_reports_its_log_determinant(trained, name: str) -> None:
    model, cfg = _model(trained, name), _config(KINDS[name])
    if not hasattr(model, "transform"):
        pytest.skip(f"model.kind: {name} is not a bijection of the data")
    model = copy.deepcopy(model).double()  # the fixture's stays as trained
    x = load_dataset(cfg.data).test[:200].double()
    u, log_det = model.transform(x)
    assert torch.allclose(model.inverse(u), x, rtol=0, atol=1e-9)
    assert torch.allclose(model.inverse(u, fast=False), model.inverse(u), rtol=0, atol=1e-12)
    for row in range(5):  # log|det du/dx| against autograd's Jacobian of the whole transform
        jac = torch.autograd.functional.jacobian(lambda v: model.transform(v[None])[0][0], x[row])
        assert abs(float(torch.linalg.slogdet(jac)[1] - log_det[row].detach())) < 1e-9


@pytest.mark.parametrize("name", NAMES)
def test_the_fast_sampler_equals_the_naive_one(trained, name: str) -> None:
    model = _model(trained, name)
    if "fast" not in inspect.signature(model.sample).parameters:
        pytest.skip(f"model.kind: {name} draws through no autoregressive sampler")
    model = copy.deepcopy(model).double()  # the fixture's stays as trained
    fast = model.sample(300, generator=torch.Generator().manual_seed(2), fast=True)
    naive = model.sample(300, generator=torch.Generator().manual_seed(2), fast=False)
    assert torch.allclose(fast, naive, rtol=0, atol=1e-10)


@pytest.mark.parametrize("name", NAMES)
def test_verify_ar_passes_and_fails_on_a_tampered_layer(trained, name: str) -> None:
    kind, run_dir = KINDS[name], trained[name][1]
    model = load_run(run_dir).model  # a fresh copy to tamper with
    assert all(kind.verify(model, 2).ok)
    net = model.made_nets()[0]
    tamper(net.output, net.output.mask == 0, count=None)
    assert not all(kind.verify(model, 2).ok)


def _metrics(run: Path) -> list[dict]:
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


@pytest.mark.parametrize("name", NAMES)
def test_saved_loaded_and_resumed_runs_are_the_uninterrupted_one(trained, tmp_path: Path, name: str) -> None:
    kind = KINDS[name]
    reference, reference_dir = trained[name]
    cut = tmp_path / "run"
    train(_config(kind, "train.epochs=2"), cut)
    resume(cut, ["train.epochs=3"])
    assert _metrics(cut) == _metrics(reference_dir)
    x = load_dataset(_config(kind).data).test[:100]
    with torch.no_grad():
        assert torch.equal(load_run(cut).model.eval().log_prob(x), reference.model.eval().log_prob(x))
