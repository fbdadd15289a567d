"""The autoregressive checks behind `made verify-ar`: exact mask products and autograd Jacobians.

Both checks read the masks the layers actually hold (not masks recomputed from degrees), so a
tampered layer is caught. The oracle is ``degrees.allowed(ranks)``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from . import degrees as deg
from .made import MADE

__all__ = ["MemberReport", "connectivity", "jacobian", "verify_made"]


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

    Returns (paths (P*D, D + C) from inputs to outputs, per hidden layer which units an input
    reaches (H_l,), per hidden layer which units reach an output (H_l,)).
    """
    masks = [layer.mask > 0 for layer in net.layers]
    out = net.output.mask > 0
    forward: list[torch.Tensor] = []  # (H_l, D + C): which inputs reach each hidden unit
    for m in masks:
        forward.append(_paths(m, forward[-1]) if forward else m)
    paths = _paths(out, forward[-1]) if forward else out.clone()
    if net.direct is not None:
        paths = paths | (net.direct.mask > 0)
    backward: list[torch.Tensor] = [out] if masks else []  # (P*D, H_l): which units reach outputs
    for m in reversed(masks[1:]):
        backward.insert(0, _paths(backward[0], m))
    d = net.features
    from_input = [f[:, :d].any(1) for f in forward]
    to_output = [b.any(0) for b in backward]
    return paths, from_input, to_output


def jacobian(net: MADE, x: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
    """d outputs / d x (P*D, D) at one point, by autograd."""

    def f(v: torch.Tensor) -> torch.Tensor:
        return net(v[None], None if c is None else c[None]).reshape(-1)

    return torch.autograd.functional.jacobian(f, x, vectorize=True)


def verify_made(net: MADE, points: int = 2, seed: int = 0) -> list[MemberReport]:
    """Check every member of ``net``: exact path structure and Jacobians at random points."""
    generator = torch.Generator().manual_seed(seed)
    d, p = net.features, net.params_per_dim
    device, dtype = net.ranks.device, net.output.weight.dtype
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
            jac = jacobian(net, x, c)
            violations += int(((jac != 0) & ~allowed).sum())
        reaches = paths.any(0)
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
