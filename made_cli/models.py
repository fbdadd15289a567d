"""What gets trained: a MADE with a Bernoulli likelihood, its mixture over masks, build_model()."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from . import sampling
from .config import Config
from .made import MADE

__all__ = ["MADEModel", "build_model"]


class MADEModel(nn.Module):
    """A Bernoulli MADE: log p(x) in nats, exact sampling and completion.

    With K masks the density is the mixture p(x) = (1/K) sum_k p_k(x) (Germain et al. 2015,
    section 4.2), never an average of logits, which would not be normalised.
    """

    def __init__(self, net: MADE) -> None:
        super().__init__()
        self.net = net

    @property
    def features(self) -> int:
        return self.net.features

    @property
    def num_masks(self) -> int:
        return self.net.num_masks

    @property
    def estimator(self) -> str:
        """How log p(x) is computed, named in every NLL the toolkit reports."""
        k = self.num_masks
        return "exact, single mask" if k == 1 else f"exact, {k}-mask mixture"

    def log_prob_dims(self, x: torch.Tensor, member: int) -> torch.Tensor:
        """log p_k(x_d | x_<d) for every dimension (B, D), under member ``member``."""
        self.net.set_member(member)
        logits = self.net(x)[:, 0]
        return -F.binary_cross_entropy_with_logits(logits, x, reduction="none")

    def log_prob_member(self, x: torch.Tensor, member: int) -> torch.Tensor:
        """log p_k(x) (B,) under one member."""
        return self.log_prob_dims(x, member).sum(-1)

    def forward(self, x: torch.Tensor, member: int) -> torch.Tensor:
        """log p_k(x) (B,): what training calls, through DistributedDataParallel when distributed."""
        return self.log_prob_member(x, member)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) (B,) in nats: the mixture over all members."""
        if self.num_masks == 1:
            return self.log_prob_member(x, 0)
        per = torch.stack([self.log_prob_member(x, k) for k in range(self.num_masks)])  # (K, B)
        return torch.logsumexp(per, 0) - math.log(self.num_masks)

    @torch.no_grad()
    def conditional_log_prob(self, x: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
        """log p(x_missing | x_observed) (B,); NaN for rows where it is not exact.

        Exact when every member generates the observed dimensions first: then
        p_k(observed) is a prefix of its chain rule and the mixture conditional is a ratio.
        """
        observed = observed.to(x.device)
        exact = sampling.exact_members(self.net.ranks, observed).all(1)
        dims = torch.stack([self.log_prob_dims(x, k) for k in range(self.num_masks)])  # (K, B, D)
        joint = torch.logsumexp(dims.sum(-1), 0)
        marginal = torch.logsumexp((dims * observed).sum(-1), 0)
        return torch.where(exact, joint - marginal, torch.nan)

    @torch.no_grad()
    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        uniforms: torch.Tensor | None = None,
        fast: bool = True,
    ) -> torch.Tensor:
        """Draw ``n`` exact samples (n, D); with an ensemble each row picks a member at random.

        ``fast`` uses the degree-scheduled sampler; ``fast=False`` runs one full forward pass
        per dimension (slow, the reference it is tested against).
        """
        empty = torch.zeros(n, self.features, device=self.net.ranks.device, dtype=self._dtype)
        nothing = torch.zeros_like(empty, dtype=torch.bool)
        return self.complete(empty, nothing, generator, uniforms, fast=fast)[0]

    @property
    def _dtype(self) -> torch.dtype:
        return self.net.output.weight.dtype

    @torch.no_grad()
    def complete(
        self,
        x: torch.Tensor,
        observed: torch.Tensor,
        generator: torch.Generator | None = None,
        uniforms: torch.Tensor | None = None,
        fast: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample the dimensions not ``observed`` (bool (B, D)) given the observed ones.

        Returns (completed x (B, D), exact (B,) bool). Observed values are kept as they are.
        """
        observed = observed.to(x.device)
        x = torch.where(observed, x, torch.zeros_like(x))
        if uniforms is None:
            uniforms = torch.rand(x.shape, generator=generator, dtype=x.dtype).to(x.device)
        members, exact = sampling.choose_members(self, x, observed, generator)
        out = x.clone()
        for k in members.unique().tolist():
            rows = members == k
            out[rows] = sampling.ancestral(self, x[rows], ~observed[rows], k, uniforms[rows], fast)
        return out, exact


def build_model(cfg: Config, features: int) -> MADEModel:
    """The model a config describes, for data of ``features`` dimensions."""
    m = cfg.model
    net = MADE(
        features,
        m.hidden,
        direct=m.direct,
        ordering=m.ordering,
        hidden_degrees=m.hidden_degrees,
        num_masks=m.num_masks,
        seed=cfg.seed,
    )
    return MADEModel(net)
