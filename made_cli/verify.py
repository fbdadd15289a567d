"""The autoregressive checks behind `made verify-ar`: exact mask products and autograd Jacobians.

Both checks read what the layers actually compute with (not masks recomputed from degrees):
the masks of an ensemble's layers, and the stored nonzero or trainable entries of a
single-mask layer's degree blocks, so a tampered mask or a nonzero weight outside the mask is
caught. Jacobians come from one backward pass over a batch of copies of the point, which is
exact because rows never mix. The oracle is ``degrees.allowed(ranks)``. A flow's step (an IAF
step, a flow layer) is checked as a map too: dz'/dz must be triangular in the step's ordering,
with log|det| equal to the sum the step reports; the kinds put these rows together.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch

from . import degrees as deg
from .condition import Condition
from .interface import Verification
from .made import MADE

__all__ = [
    "MADE_COLUMNS",
    "Bijection",
    "MemberReport",
    "StepReport",
    "WholeFlow",
    "connectivity",
    "jacobian",
    "made_cells",
    "made_verification",
    "rows_jacobian",
    "triangular_check",
    "triangular_report",
    "verify_made",
    "whole_flow_caption",
    "whole_flow_error",
]

LOG_DET_TOLERANCE = 1e-9  # nats; the step check runs in float64
FLOW_JACOBIAN_FEATURES = 1024  # a whole flow's D x D Jacobian is checked up to this D (MNIST: seconds)


@dataclass(frozen=True)
class MemberReport:
    """What was checked for one ensemble member, and what was found."""

    member: int
    forbidden_paths: int  # exact: output/input pairs joined by a path the ordering forbids
    jacobian_violations: int  # numerical: nonzero d out / d in where the ordering forbids
    jacobian_points: int
    allowed_pairs: int
    realised_pairs: int  # allowed pairs that some path actually connects
    inputs_without_output: int  # inputs (not generated last) that reach no output
    hidden_without_path: int  # hidden units cut off from every input or every output

    @property
    def ok(self) -> bool:
        return self.forbidden_paths == 0 and self.jacobian_violations == 0

    def to_dict(self) -> dict[str, int | bool]:
        return {**asdict(self), "ok": self.ok}


def _paths(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Boolean composition: a path through ``a`` (out, mid) after ``b`` (mid, in)."""
    return (a.double() @ b.double()) > 0


def connectivity(net: MADE) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """Exact paths of the current masks.

    Returns (paths (P*D, D + C) from inputs to outputs, in the padded layout (rows no dimension
    uses have none), per hidden layer which units an input reaches (H_l,), per hidden layer which
    units reach an output (H_l,)).
    """
    masks = [layer.connections() for layer in net.layers]
    out = net.padded(net.output.connections())
    forward: list[torch.Tensor] = []  # (H_l, D + C): which inputs reach each hidden unit
    for m in masks:
        forward.append(_paths(m, forward[-1]) if forward else m)
    paths = _paths(out, forward[-1]) if forward else out.clone()
    if net.direct is not None:
        paths = paths | net.padded(net.direct.connections())
    backward: list[torch.Tensor] = [out] if masks else []  # (P*D, H_l): which units reach outputs
    for m in reversed(masks[1:]):
        backward.insert(0, _paths(backward[0], m))
    d = net.features
    from_input = [f[:, :d].any(1) for f in forward]
    to_output = [b.any(0) for b in backward]
    return paths, from_input, to_output


def rows_jacobian(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """d f / d x (M, D) at one point x (D,) of a map ``f`` (N, D) -> (N, M) that treats rows
    independently: one backward pass over M copies of x, copy m asking for output m."""
    with torch.enable_grad():
        width = f(x[None].detach()).shape[-1]
        copies = x.detach().expand(width, -1).clone().requires_grad_(True)
        out = f(copies).reshape(width, width)
        (grad,) = torch.autograd.grad(out, copies, torch.eye(width, dtype=out.dtype, device=out.device))
    return grad


def jacobian(net: MADE, x: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
    """d outputs / d x (P*D, D) at one point, by autograd."""
    return rows_jacobian(lambda v: net(v, None if c is None else c.expand(v.shape[0], -1)).flatten(1), x)


def embedding_violations(net: MADE, x: torch.Tensor, c: torch.Tensor | None, allowed: torch.Tensor) -> int:
    """Outputs (of P*D) that move when one column's category changes, or its cell goes missing,
    where the degrees forbid it: the embedding's share of the Jacobian check, which autograd
    cannot see through a lookup. ``x`` (D,): a point whose discrete columns are read as codes."""
    levels = net.embed_levels.to(x.device)
    raw = torch.where(levels > 0, torch.floor(x * levels.clamp_min(1)), x)[None]  # (1, D)
    c = None if c is None else c[None]
    with torch.no_grad():
        base = net(x[None], c, raw=raw).flatten(1)[0]
        count = 0
        for j in range(net.features):
            changes = [math.nan] + ([float((raw[0, j] + 1) % levels[j])] if int(levels[j]) > 1 else [])
            for value in changes:
                moved_raw = raw.clone()
                moved_raw[0, j] = value
                moved = net(x[None], c, raw=moved_raw).flatten(1)[0] != base
                count += int((moved & ~allowed[:, j].to(moved.device)).sum())
    return count


def verify_made(net: MADE, points: int = 2, seed: int = 0) -> list[MemberReport]:
    """Check every member of ``net``: exact path structure and Jacobians at random points."""
    generator = torch.Generator().manual_seed(seed)
    d, p = net.features, net.params_per_dim
    device, dtype = net.ranks.device, net.output.bias.dtype
    reports = []
    start = net.member
    for member in [start, *(k for k in range(net.num_masks) if k != start)]:
        net.set_member(member)
        ranks = net.ranks[member]
        allowed = deg.allowed(ranks).repeat(p, 1)  # (P*D, D)
        paths, from_input, to_output = connectivity(net)
        paths = paths[:, :d]
        violations = 0
        for _ in range(points):
            x = torch.rand(d, generator=generator).to(device, dtype)
            c = torch.randn(net.context, generator=generator).to(device, dtype) if net.context else None
            jac = jacobian(net, x, c)  # padded rows: zero, so never a violation
            violations += int(((jac != 0) & ~allowed).sum())
            if net.embedding is not None:  # a table's categories and missing cells
                violations += embedding_violations(net, x, c, allowed)
        reaches = paths.any(0)
        if net.output_rows is not None:  # count the pairs of the outputs the net has
            kept = net.output_rows.cpu()
            allowed, paths = allowed[kept.to(allowed.device)], paths[kept.to(paths.device)]
        reports.append(
            MemberReport(
                member=member,
                forbidden_paths=int((paths & ~allowed).sum()),
                jacobian_violations=violations,
                jacobian_points=points,
                allowed_pairs=int(allowed.sum()),
                realised_pairs=int((paths & allowed).sum()),
                inputs_without_output=int((~reaches & (ranks < d)).sum()),
                hidden_without_path=sum(
                    int((~(a & b)).sum()) for a, b in zip(from_input, to_output, strict=True)
                ),
            )
        )
    net.set_member(start)
    return sorted(reports, key=lambda r: r.member)


@dataclass(frozen=True)
class StepReport:
    """One step of a flow (an IAF step, a flow layer): its MADE's report and the step's own
    Jacobian dz'/dz."""

    step: int
    made: MemberReport
    off_triangle: int  # nonzero dz'_i/dz_j with j generated after i (or i itself off the diagonal)
    log_det_error: float  # worst |log|det dz'/dz| - the sum the step reports|, in nats

    @property
    def ok(self) -> bool:
        return self.made.ok and self.off_triangle == 0 and self.log_det_error <= LOG_DET_TOLERANCE

    def cells(self) -> list[str]:
        """The step's own columns of `made verify-ar`'s table."""
        return [str(self.off_triangle), f"{self.log_det_error:.1e}"]

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "made": self.made.to_dict(), "off_triangle": self.off_triangle,
                "log_det_error": self.log_det_error, "ok": self.ok}  # fmt: skip


Bijection = Callable[[torch.Tensor, torch.Tensor | None], tuple[torch.Tensor, torch.Tensor]]


def _jacobian_and_log_det_error(
    step: Bijection, z: torch.Tensor, h: torch.Tensor | None
) -> tuple[torch.Tensor, float]:
    """(dz'/dz (D, D) by autograd, |log|det| - the sum ``step`` reports|) at one point z (D,)
    of a float64 map ``step(z, h) -> (z' (1, D), log|det| split per dimension (1, D))``."""
    hb = None if h is None else h[None]
    jac = rows_jacobian(lambda v: step(v, None if h is None else h.expand(v.shape[0], -1))[0], z)
    with torch.no_grad():
        log_det = step(z[None], hb)[1].sum()
    sign, log_abs = torch.linalg.slogdet(jac)
    return jac, abs(float(log_abs - log_det)) if sign != 0 else float("inf")


@torch.no_grad()
def triangular_check(
    step: Bijection, ranks: torch.Tensor, context: int, points: int, generator: torch.Generator
) -> tuple[int, float]:
    """(off-triangle entries, worst log-det error in nats) of a float64 autoregressive map
    ``step(z, h) -> (z' (1, D), log|dz'_d/dz_d| (1, D))`` at random points: dz'/dz must vanish
    wherever ``ranks`` forbid (the diagonal aside), and log|det| must be the sum it reports."""
    features = ranks.numel()
    lower = deg.allowed(ranks) | torch.eye(features, dtype=torch.bool)  # may be nonzero
    off, error = 0, 0.0
    for _ in range(points):
        z = torch.randn(features, generator=generator, dtype=torch.float64)
        h = torch.randn(context, generator=generator, dtype=torch.float64) if context else None
        jac, err = _jacobian_and_log_det_error(step, z, h)
        off += int(((jac != 0) & ~lower).sum())
        error = max(error, err)
    return off, error


def triangular_report(
    t: int,
    made: MemberReport,
    step: Bijection,
    ranks: torch.Tensor,
    context: int,
    points: int,
    generator: torch.Generator,
) -> StepReport:
    """Step ``t``'s report: its MADE's, and ``triangular_check`` of the (float64) step itself."""
    off, error = triangular_check(step, ranks, context, points, generator)
    return StepReport(step=t, made=made, off_triangle=off, log_det_error=error)


@dataclass(frozen=True)
class WholeFlow:
    """A whole flow's log|det du/dx| against autograd's, at random points."""

    error: float  # worst error, in nats

    @property
    def ok(self) -> bool:
        return self.error <= LOG_DET_TOLERANCE


@torch.no_grad()
def whole_flow_error(
    transform: Callable[[torch.Tensor, Condition], tuple[torch.Tensor, torch.Tensor]],
    shift: torch.Tensor,
    scale: torch.Tensor,
    classes: int,
    context_features: int,
    points: int,
    generator: torch.Generator,
) -> WholeFlow | None:
    """The worst error of a float64 flow's log-determinant, ``transform(x, given) ->
    (u (1, D), log|det| split per dimension (1, D))``, at points x = shift + scale * noise,
    against autograd's; None where D is too large to take the whole Jacobian
    (``FLOW_JACOBIAN_FEATURES``)."""
    features = shift.numel()
    if features > FLOW_JACOBIAN_FEATURES:
        return None
    worst = 0.0
    for _ in range(points):
        x = shift + scale * torch.randn(features, generator=generator, dtype=torch.float64)
        y = torch.randint(classes, (1,), generator=generator) if classes else None
        c = (
            torch.randn(1, context_features, generator=generator, dtype=torch.float64)
            if context_features
            else None
        )

        given = Condition(y, c)

        def step(v: torch.Tensor, _h: Any, given: Condition = given) -> Any:
            return transform(v, given)

        worst = max(worst, _jacobian_and_log_det_error(step, x, None)[1])
    return WholeFlow(worst)


def whole_flow_caption(checked: bool) -> str:
    """What the log-det columns of a flow's `made verify-ar` table were held to."""
    what = "and the whole flow's" if checked else f"(the whole flow's for D <= {FLOW_JACOBIAN_FEATURES} only)"
    return f"each layer's log-det error {what} must be under {LOG_DET_TOLERANCE:g} nats (float64)"


MADE_COLUMNS = ["forbidden paths", "Jacobian violations", "allowed realised", "dead inputs", "dead hidden"]


def made_cells(r: MemberReport) -> list[str]:
    """A MADE's columns of `made verify-ar`'s table."""
    realised = f"{100 * r.realised_pairs / max(1, r.allowed_pairs):.1f}%"
    return [str(r.forbidden_paths), str(r.jacobian_violations), realised, str(r.inputs_without_output),
            str(r.hidden_without_path)]  # fmt: skip


def made_verification(net: MADE, points: int = 2) -> Verification:
    """``verify_made`` as the rows of `made verify-ar`'s table, one per ensemble member."""
    reports = verify_made(net, points=points)
    return Verification(
        unit="member",
        columns=MADE_COLUMNS,
        rows=[[str(r.member), *made_cells(r)] for r in reports],
        ok=[r.ok for r in reports],
        caption=f"Jacobian at {points} random point(s)",
        verdict=f"all {len(reports)} mask(s) satisfy the autoregressive property",
        records=[r.to_dict() for r in reports],
    )
