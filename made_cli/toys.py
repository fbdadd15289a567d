"""Built-in 2-D densities (data.name: toy): samplers, their labels, and exact densities where they
have a closed form, so that a model's picture can be held against the truth."""

from __future__ import annotations

import math

import torch

from .errors import UsageError

__all__ = ["TOY_CLASSES", "toy_log_prob", "toy_rows"]

# label classes of each shape (0: unlabelled)
TOY_CLASSES = {"moons": 2, "circles": 2, "eight_gaussians": 8, "checkerboard": 0, "pinwheel": 5, "spirals": 2}
_MOONS_NOISE = 0.1  # standard deviation of the Gaussian noise around each half circle
_CIRCLES = ((1.0, 0.08), (0.5, 0.08))  # (radius, noise standard deviation) of the outer and inner circle
_EIGHT = (2.0, 0.2)  # the 8 Gaussians' distance from the origin and standard deviation
_PINWHEEL = (5, 0.3, 0.05, 0.25)  # arms, radial and tangential standard deviation, twist rate
_SPIRAL_NOISE = 0.08


def toy_rows(shape: str, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``n`` rows (n, 2) of a built-in 2-D density and each row's label (n,) (None: unlabelled).

    - moons: two interleaved half circles of radius 1 (the upper centred at the origin, the lower
      at (1, 0.5)), uniform in angle, Gaussian noise of standard deviation 0.1; label: the moon.
    - circles: circles of radius 1 and 0.5 about the origin, half the rows each, uniform in
      angle, Gaussian noise of standard deviation 0.08; label: the circle.
    - eight_gaussians: 8 Gaussians of standard deviation 0.2 at distance 2 from the origin, at
      angles k pi / 4, equally likely; label: the Gaussian.
    - checkerboard: uniform on the 8 dark squares (side 1) of a 4 x 4 board on [-2, 2]^2, the
      square at [-2, -1] x [-2, -1] dark; unlabelled.
    - pinwheel: 5 arms; a point (r, t) of a Gaussian centred at (1, 0) with standard deviations
      0.3 (radial) and 0.05 (tangential) is turned by the arm's angle plus 0.25 exp(r), so arms
      twist outwards (after the pinwheel of Johnson et al. 2016); label: the arm.
    - spirals: two interleaved spirals, radius proportional to the angle t (t = 3 pi sqrt(u),
      u uniform), the second turned by pi, Gaussian noise of standard deviation 0.08; label: the
      spiral.
    """
    if shape not in TOY_CLASSES:
        raise UsageError(f"unknown toy shape {shape!r} (known: {', '.join(TOY_CLASSES)})")
    g = generator
    if shape == "checkerboard":
        column = torch.randint(4, (n,), generator=g)
        row = 2 * torch.randint(2, (n,), generator=g) + column % 2  # dark: row + column even
        corner = torch.stack([column, row], 1).float() - 2
        # kept off the squares' edges, which float32 would round onto (into a light square)
        offset = torch.rand(n, 2, generator=g).clamp(2**-20, 1 - 2**-20)
        return corner + offset, None
    classes = TOY_CLASSES[shape]
    labels = torch.randint(classes, (n,), generator=g)
    if shape == "moons":
        angle = torch.rand(n, generator=g) * math.pi
        upper = torch.stack([torch.cos(angle), torch.sin(angle)], 1)
        lower = torch.stack([1 - torch.cos(angle), 0.5 - torch.sin(angle)], 1)
        x = torch.where(labels[:, None] == 0, upper, lower)
        return x + _MOONS_NOISE * torch.randn(n, 2, generator=g), labels
    if shape == "circles":
        angle = torch.rand(n, generator=g) * 2 * math.pi
        radius = torch.tensor([r for r, _ in _CIRCLES])[labels]
        noise = torch.tensor([s for _, s in _CIRCLES])[labels]
        x = radius[:, None] * torch.stack([torch.cos(angle), torch.sin(angle)], 1)
        return x + noise[:, None] * torch.randn(n, 2, generator=g), labels
    if shape == "eight_gaussians":
        distance, spread = _EIGHT
        angle = labels.float() * math.pi / 4
        centre = distance * torch.stack([torch.cos(angle), torch.sin(angle)], 1)
        return centre + spread * torch.randn(n, 2, generator=g), labels
    if shape == "pinwheel":
        arms, radial, tangential, rate = _PINWHEEL
        point = torch.randn(n, 2, generator=g) * torch.tensor([radial, tangential])
        point[:, 0] += 1
        angle = labels.float() * 2 * math.pi / arms + rate * torch.exp(point[:, 0])
        cos, sin = torch.cos(angle), torch.sin(angle)
        x = torch.stack([cos * point[:, 0] - sin * point[:, 1], sin * point[:, 0] + cos * point[:, 1]], 1)
        return x, labels
    # spirals
    t = 3 * math.pi * torch.sqrt(torch.rand(n, generator=g))
    arm = torch.stack([torch.cos(t), torch.sin(t)], 1) * (t / (3 * math.pi) * 2)[:, None]
    x = torch.where(labels[:, None] == 0, arm, -arm)
    return x + _SPIRAL_NOISE * torch.randn(n, 2, generator=g), labels


def toy_log_prob(shape: str, x: torch.Tensor) -> torch.Tensor | None:
    """The exact log-density (B,) of a shape at x (B, 2), for the shapes that have a closed form
    (circles, eight_gaussians, checkerboard); None for the others."""
    if shape not in TOY_CLASSES:
        raise ValueError(f"unknown toy shape {shape!r} (known: {', '.join(TOY_CLASSES)})")
    x = x.double()
    if shape == "eight_gaussians":
        distance, spread = _EIGHT
        angle = torch.arange(8, dtype=torch.float64) * math.pi / 4
        centres = distance * torch.stack([torch.cos(angle), torch.sin(angle)], 1)  # (8, 2)
        squared = ((x[:, None] - centres[None]) ** 2).sum(-1) / spread**2
        per = -0.5 * squared - math.log(2 * math.pi * spread**2)
        return torch.logsumexp(per, 1) - math.log(8)
    if shape == "circles":
        # a circle of radius r blurred by N(0, s^2 I): exp(-(rho - r)^2 / 2s^2) i0e(rho r / s^2) / (2 pi s^2)
        rho = x.norm(dim=1)
        per = [
            -((rho - r) ** 2) / (2 * s**2)
            + torch.log(torch.special.i0e(rho * r / s**2))
            - math.log(2 * math.pi * s**2)
            for r, s in _CIRCLES
        ]
        return torch.logsumexp(torch.stack(per), 0) - math.log(len(_CIRCLES))
    if shape == "checkerboard":
        inside = (x > -2).all(1) & (x < 2).all(1)
        cell = torch.floor(x + 2).long()
        dark = (cell.sum(1) % 2) == 0
        return torch.where(inside & dark, math.log(1 / 8), -math.inf)
    return None
