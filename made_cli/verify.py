"""The autoregressive checks behind `made verify-ar`: exact mask products and autograd Jacobians.

Both checks read what the layers actually compute with (not masks recomputed from degrees):
the masks of an ensemble's layers, and the stored nonzero or trainable entries of a
single-mask layer's degree blocks, so a tampered mask or a nonzero weight outside the mask is
caught. Jacobians come from one backward pass over a batch of copies of the point, which is
exact because rows never mix. The oracle is ``degrees.allowed(ranks)``. For an IAF-VAE each step's
MADE is checked with its context, and so is the step itself: dz'/dz must be triangular in the
step's ordering, with log|det| equal to the sum of log gates that log q(z | x) subtracts.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch

from . import degrees as deg
from .iaf import IAFVAE, IAFStep
from .interface import Verification
from .made import MADE
from .maf import MAF

__all__ = [
    "MemberReport",
    "StepReport",
    "connectivity",
    "iaf_verification",
    "jacobian",
    "made_verification",
    "maf_verification",
    "rows_jacobian",
    "step_jacobian",
    "triangular_check",
    "verify_iaf",
    "verify_made",
    "verify_maf",
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
    """One IAF step: its MADE's report and the step's own Jacobian dz'/dz."""

    step: int
    made: MemberReport
    off_triangle: int  # nonzero dz'_i/dz_j with j generated after i (or i itself off the diagonal)
    log_det_error: float  # worst |log|det dz'/dz| - sum(log gate)| over the points, in nats

    @property
    def ok(self) -> bool:
        return self.made.ok and self.off_triangle == 0 and self.log_det_error <= LOG_DET_TOLERANCE

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "made": self.made.to_dict(), "off_triangle": self.off_triangle,
                "log_det_error": self.log_det_error, "ok": self.ok}  # fmt: skip


def step_jacobian(
    step: IAFStep, z: torch.Tensor, h: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(dz'/dz (L, L) by autograd, sum of log gates) of one step at one point z (L,)."""

    jac = rows_jacobian(lambda v: step(v, None if h is None else h.expand(v.shape[0], -1))[0], z)
    _, log_gate = step(z[None], None if h is None else h[None])
    return jac, log_gate.sum()


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


def verify_iaf(model: IAFVAE, points: int = 2, seed: int = 0) -> list[StepReport]:
    """Check every IAF step: its MADE (with context), and its Jacobian and log-determinant."""
    generator = torch.Generator().manual_seed(seed)
    reports = []
    for t, step in enumerate(model.flows):
        (made,) = verify_made(step.made, points=points, seed=seed + t)
        exact = copy.deepcopy(step).double().cpu()
        off, error = triangular_check(exact, exact.made.ranks[0], exact.made.context, points, generator)
        reports.append(StepReport(step=t, made=made, off_triangle=off, log_det_error=error))
    return reports


_MADE_COLUMNS = ["forbidden paths", "Jacobian violations", "allowed realised", "dead inputs", "dead hidden"]


def _made_cells(r: MemberReport) -> list[str]:
    realised = f"{100 * r.realised_pairs / max(1, r.allowed_pairs):.1f}%"
    return [str(r.forbidden_paths), str(r.jacobian_violations), realised, str(r.inputs_without_output),
            str(r.hidden_without_path)]  # fmt: skip


def _step_cells(r: StepReport) -> list[str]:
    return [str(r.off_triangle), f"{r.log_det_error:.1e}"]


def made_verification(net: MADE, points: int = 2) -> Verification:
    """``verify_made`` as the rows of `made verify-ar`'s table, one per ensemble member."""
    reports = verify_made(net, points=points)
    return Verification(
        unit="member",
        columns=_MADE_COLUMNS,
        rows=[[str(r.member), *_made_cells(r)] for r in reports],
        ok=[r.ok for r in reports],
        caption=f"Jacobian at {points} random point(s)",
        verdict=f"all {len(reports)} mask(s) satisfy the autoregressive property",
        records=[r.to_dict() for r in reports],
    )


def iaf_verification(model: IAFVAE, points: int = 2) -> Verification:
    """``verify_iaf`` as the rows of `made verify-ar`'s table, one per IAF step."""
    reports = verify_iaf(model, points=points)
    return Verification(
        unit="IAF step",
        columns=[*_MADE_COLUMNS, "dz'/dz off triangle", "log-det error"],
        rows=[[str(r.step), *_made_cells(r.made), *_step_cells(r)] for r in reports],
        ok=[r.ok for r in reports],
        caption=(
            f"Jacobian at {points} random point(s); log-det error must be under {LOG_DET_TOLERANCE:g} "
            "nats (float64)"
        ),
        verdict=(
            f"all {len(reports)} IAF step(s) satisfy the autoregressive property, with triangular "
            "Jacobians whose log-determinant is the sum of log gates"
        ),
        records=[r.to_dict() for r in reports],
    )


@torch.no_grad()
def verify_maf(
    model: MAF, points: int = 2, seed: int = 0
) -> tuple[list[StepReport], MemberReport | None, float | None]:
    """Check a flow: each layer's MADE, Jacobian and log-determinant (as an IAF step's); the
    MoG base's MADE; and the whole flow's log|det du/dx| against autograd's (D <= 1024).
    Returns (layer reports, base report or None, the whole flow's worst log-det error or None)."""
    generator = torch.Generator().manual_seed(seed)
    flow = copy.deepcopy(model).double().cpu().eval()
    layers = []
    for t, layer in enumerate(flow.layers):
        (made,) = verify_made(model.layers[t].made, points=points, seed=seed + t)
        off, error = triangular_check(layer, layer.made.ranks[0], layer.made.context, points, generator)
        layers.append(StepReport(step=t, made=made, off_triangle=off, log_det_error=error))
    base = (
        None if model.base is None else verify_made(model.base.net, points=points, seed=seed + len(layers))[0]
    )
    whole = None
    if model.features <= FLOW_JACOBIAN_FEATURES:
        whole = 0.0
        for _ in range(points):
            noise = torch.randn(model.features, generator=generator, dtype=torch.float64)
            x = flow.input_shift + flow.input_scale * noise
            y = torch.randint(model.classes, (1,), generator=generator) if model.classes else None
            c = torch.randn(1, model.context_features, generator=generator, dtype=torch.float64)
            c = c if model.context_features else None

            def transform(v: torch.Tensor, _h: Any, y: Any = y, c: Any = c) -> Any:
                return flow.transform_dims(v, y, context=c)

            _, error = _jacobian_and_log_det_error(transform, x, None)
            whole = max(whole, error)
    return layers, base, whole


def maf_verification(model: MAF, points: int = 2) -> Verification:
    """``verify_maf`` as the rows of `made verify-ar`'s table: one per layer, the base, the flow."""
    layers, base, whole = verify_maf(model, points=points)
    none = ["-"] * len(_MADE_COLUMNS)
    rows = [[f"layer {r.step}", *_made_cells(r.made), *_step_cells(r)] for r in layers]
    ok = [r.ok for r in layers]
    records: list[dict[str, Any]] = [r.to_dict() for r in layers]
    if base is not None:
        rows.append(["base", *_made_cells(base), "-", "-"])
        ok.append(base.ok)
        records.append({"step": "base", "made": base.to_dict(), "ok": base.ok})
    if whole is not None:
        rows.append(["whole flow", *none, "-", f"{whole:.1e}"])
        ok.append(whole <= LOG_DET_TOLERANCE)
        records.append({"step": "whole flow", "log_det_error": whole, "ok": whole <= LOG_DET_TOLERANCE})
    checked = (
        "and the whole flow's"
        if whole is not None
        else f"(the whole flow's for D <= {FLOW_JACOBIAN_FEATURES} only)"
    )
    return Verification(
        unit="flow part",
        columns=[*_MADE_COLUMNS, "du/dx off triangle", "log-det error"],
        rows=rows,
        ok=ok,
        caption=(
            f"Jacobian at {points} random point(s); each layer's log-det error {checked} must be under "
            f"{LOG_DET_TOLERANCE:g} nats (float64)"
        ),
        verdict=(
            f"all {len(layers)} flow layer(s) satisfy the autoregressive property, with triangular "
            "Jacobians whose log-determinant is -sum alpha"
            + (", and so does the base" if base is not None else "")
            + (", and the flow's log-determinant matches autograd's" if whole is not None else "")
        ),
        records=records,
    )
