"""The built-in 2-D densities (toys.py): samplers against their stated densities."""

from __future__ import annotations

import pytest
import torch

from made_cli.config import load_config
from made_cli.data import load_dataset
from made_cli.toys import TOY_CLASSES, toy_log_prob, toy_rows

EXACT = ("eight_gaussians", "circles", "checkerboard")


def _histogram_tv(shape: str, density_of: str, n: int = 200_000) -> float:
    """TV between a histogram of ``shape``'s samples and ``density_of``'s density on 0.2 bins."""
    x, _ = toy_rows(shape, n, torch.Generator().manual_seed(0))
    edges = torch.linspace(-3, 3, 31, dtype=torch.float64)
    inside = ((x > -3) & (x < 3)).all(1)
    cell = torch.bucketize(x[inside].double(), edges) - 1  # (m, 2)
    counts = torch.bincount(cell[:, 0] * 30 + cell[:, 1], minlength=900).double() / n
    sub = (torch.arange(4, dtype=torch.float64) + 0.5) / 4 * 0.2  # 4 x 4 midpoints per bin
    corners = torch.cartesian_prod(edges[:-1], edges[:-1])  # (900, 2), the same order as cell
    points = (corners[:, None] + torch.cartesian_prod(sub, sub)[None]).reshape(-1, 2)
    mass = toy_log_prob(density_of, points).exp().view(900, 16).mean(1) * 0.04
    return 0.5 * float((counts - mass).abs().sum()) + 0.5 * float(1 - mass.sum())


@pytest.mark.parametrize("shape", EXACT)
def test_samplers_follow_their_stated_densities(shape: str) -> None:
    """200,000 samples against the density on 0.2 x 0.2 bins: TV under 0.02 (noise about 0.01);
    held against another shape's density the same samples are far off."""
    assert _histogram_tv(shape, shape) < 0.02
    other = EXACT[(EXACT.index(shape) + 1) % len(EXACT)]
    assert _histogram_tv(shape, other) > 0.5


@pytest.mark.parametrize("shape", EXACT)
def test_stated_densities_integrate_to_one(shape: str) -> None:
    h = 0.005  # the midpoints of a grid whose lines the checkerboard's edges fall on
    side = -4 + h / 2 + h * torch.arange(1600, dtype=torch.float64)
    density = toy_log_prob(shape, torch.cartesian_prod(side, side)).exp()
    assert abs(float(density.sum()) * h * h - 1) < 1e-3


@pytest.mark.parametrize("shape", list(TOY_CLASSES))
def test_every_shape_loads_with_its_labels_and_seed(shape: str) -> None:
    cfg = load_config(None, ["data.name=toy", f"data.shape={shape}", "data.size=500", "model.kind=maf"])
    d = load_dataset(cfg.data)
    assert (d.train.shape, d.valid.shape, d.test.shape) == ((500, 2), (100, 2), (100, 2))
    assert d.classes == TOY_CLASSES[shape] and bool(torch.isfinite(d.train).all())
    if d.classes:
        labels = torch.cat([d.split_labels(s) for s in ("train", "valid", "test")])
        assert set(labels.tolist()) == set(range(d.classes))
    else:
        assert d.labels is None
    again = load_dataset(cfg.data)
    reseeded = ["data.name=toy", f"data.shape={shape}", "data.size=500", "data.seed=1", "model.kind=maf"]
    other = load_dataset(load_config(None, reseeded).data)
    assert torch.equal(d.train, again.train) and not torch.equal(d.train, other.train)
    assert (toy_log_prob(shape, d.train) is None) == (shape not in EXACT)


def test_the_stated_numbers() -> None:
    """The constants the docstring and README state: eight Gaussians of standard deviation 0.2 at
    distance 2 and angles k pi/4; circles of radius 1 and 0.5; 1/8 of the checkerboard's mass on
    its corner square [-2, -1]^2, none on [-1, 0] x [-2, -1]."""
    g = torch.Generator().manual_seed(1)
    x, labels = toy_rows("eight_gaussians", 80_000, g)
    for k in range(8):
        rows = x[labels == k]
        angle = torch.tensor(k * torch.pi / 4)
        assert torch.allclose(rows.mean(0), 2 * torch.stack([angle.cos(), angle.sin()]), atol=0.01)
        assert torch.allclose(rows.std(0), torch.tensor([0.2, 0.2]), atol=0.01)
    x, labels = toy_rows("circles", 80_000, g)
    assert abs(float(x[labels == 0].norm(dim=1).mean()) - 1.0) < 0.01
    assert abs(float(x[labels == 1].norm(dim=1).mean()) - 0.5) < 0.01
    x, _ = toy_rows("checkerboard", 80_000, g)
    corner = ((x >= -2) & (x <= -1)).all(1).float().mean()
    assert abs(float(corner) - 1 / 8) < 0.005
    assert not bool(((x[:, 0] > -1) & (x[:, 0] < 0) & (x[:, 1] > -2) & (x[:, 1] < -1)).any())
    assert bool(torch.isfinite(toy_log_prob("checkerboard", x)).all())  # no sample on a light square
    with pytest.raises(ValueError, match="unknown toy shape"):
        toy_log_prob("moon", x)
