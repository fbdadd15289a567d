"""The IAF-VAE: a VAE whose posterior is refined by inverse autoregressive flow steps, each a MADE
on (z, h) with the encoder's context h at degree 0 (Kingma et al. 2016).

q(z | x): z0 = mu + sigma * eps, then per step (m, s) = MADE(z, h), gate = sigmoid(s),
z = gate * z + (1 - gate) * m. Output d of the MADE sees only the z of smaller rank, so dz'/dz
is triangular in the step's ordering with diagonal gate, and log q(z | x) falls by
sum(log gate). With no steps this is the diagonal-Gaussian VAE. p(z) is N(0, I) and
p(x | z) a product of Bernoullis whose logits an MLP decoder gives.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ... import degrees as deg
from ...condition import UNCONDITIONAL, Condition
from ...config import Config, check_seed
from ...errors import BadArgument
from ...evaluation import evaluate_terms
from ...heads import Bernoulli, ColumnLaw, check_observed, check_rows, standard_normal_log_prob
from ...interface import APPROXIMATE, Completion, Progress, Verification
from ...made import MADE
from ...verify import (
    LOG_DET_TOLERANCE,
    MADE_COLUMNS,
    StepReport,
    made_cells,
    rows_jacobian,
    triangular_report,
    verify_made,
)

__all__ = [
    "GATE_INIT", "IAFVAE", "IMPUTATION_ROUNDS", "IAFStep", "build", "describe", "step_jacobian", "verify",
    "verify_iaf",
]  # fmt: skip

# The gate starts near 1 (Kingma et al. 2016 initialise s's bias to +1 or +2): each step
# starts close to the identity, so deep stacks train from the diagonal posterior.
GATE_INIT = 0.88
_EVAL_SEED = 1234  # validation draws the same noise every epoch: ELBOs compare across epochs
IMPUTATION_ROUNDS = 50  # of `made complete` unless it is given a number


def _mlp(sizes: Sequence[int]) -> nn.Sequential:
    """Linear layers with ReLU between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class IAFStep(nn.Module):
    """One IAF step: a MADE on (z, h) gives (m, s) per dimension; z' = gate*z + (1-gate)*m."""

    def __init__(self, made: MADE) -> None:
        super().__init__()
        if made.params_per_dim != 2 or made.num_masks != 1:
            raise ValueError("an IAF step needs a single-mask MADE with 2 parameters per dimension")
        self.made = made
        d = made.features
        with torch.no_grad():  # s = logit(GATE_INIT) whatever the input, at the start
            made.output.zero_rows(d)
            made.output.bias[d:].fill_(math.log(GATE_INIT / (1 - GATE_INIT)))
            if made.direct is not None:
                made.direct.zero_rows(d)

    def forward(self, z: torch.Tensor, h: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(z' (B, L), log gate (B, L)): log|det dz'/dz| is the sum of the second."""
        m, s = self.made(z, h).unbind(1)
        gate = torch.sigmoid(s)
        return gate * z + (1 - gate) * m, F.logsigmoid(s)


class IAFVAE(nn.Module):
    """A VAE with Bernoulli decoder and an IAF posterior of ``steps`` MADE steps.

    Implements the ``DensityModel`` protocol (model.kind: iaf_vae). It is not conditioned on
    labels (``classes`` is 0), and ``head`` is its decoder's law of each pixel.
    """

    classes = 0
    context_features = 0

    def __init__(
        self,
        features: int,
        *,
        latent: int,
        encoder: Sequence[int],
        decoder: Sequence[int],
        context: int,
        steps: int,
        step_hidden: Sequence[int],
        direct: bool = True,
        ordering: deg.Ordering = "natural",
        hidden_degrees: deg.HiddenDegrees = "random",
        warmup_epochs: int = 0,
        free_bits: float = 0.0,
        importance_samples: int = 1000,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.head = Bernoulli()
        self.importance_samples = importance_samples  # K of ``evaluate`` unless it is given one
        self.latent, self.steps = latent, steps
        self.context_size = context if steps else 0  # h only feeds the steps
        self.warmup_epochs, self.free_bits = warmup_epochs, free_bits
        self.encoder = _mlp([features, *encoder, 2 * latent + self.context_size])
        self.decoder = _mlp([latent, *decoder, features])
        flows = []
        for t in range(steps):
            made = MADE(
                latent, step_hidden, context=self.context_size, params_per_dim=2, direct=direct,
                ordering=ordering, hidden_degrees=hidden_degrees, seed=seed + t,
                ranks=latent + 1 - flows[-1].made.ranks if t else None,  # each step reverses the last
            )  # fmt: skip
            flows.append(IAFStep(made))
        self.flows = nn.ModuleList(flows)
        self._features = features

    @property
    def features(self) -> int:
        return self._features

    @property
    def _device(self) -> torch.device:
        return self.decoder[-1].weight.device

    @property
    def _dtype(self) -> torch.dtype:
        return self.decoder[-1].weight.dtype

    @property
    def estimator(self) -> str:
        """What the trainer's validation number is: the negative ELBO, a bound on the NLL."""
        return "-ELBO, an upper bound on the NLL, 1 posterior sample per image"

    def describe(self) -> str:
        flow = "diagonal-Gaussian posterior (no IAF steps)"
        if self.steps:
            made = f"MADE hidden={self.flows[0].made.hidden}, context h={self.context_size}"
            flow = f"{self.steps} IAF steps ({made}, orderings alternate)"
        return f"IAF-VAE latent={self.latent}, {flow}, Bernoulli decoder"

    def made_nets(self) -> list[MADE]:
        """Every MADE in the model, in step order."""
        return [step.made for step in self.flows]

    # -- the densities -------------------------------------------------------------------------
    @torch.no_grad()
    def fit_inputs(self, train: torch.Tensor, given: Condition = UNCONDITIONAL) -> None:
        """Start the decoder from the training marginals (the bias of its last layer); the
        data's labels, if any, play no part (the config refuses context columns)."""
        bias = self.head.init_bias(train).reshape(-1)
        self.decoder[-1].bias.copy_(bias.to(self.decoder[-1].bias))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(mu (B, L), log sigma (B, L), h (B, C) or None) of q(z0 | x)."""
        out = self.encoder(x)
        mu, log_sigma, h = out.split([self.latent, self.latent, self.context_size], dim=-1)
        return mu, log_sigma, (h if self.context_size else None)

    def flow(self, z: torch.Tensor, h: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Run z through every step: (z_T (B, L), summed log gates (B, L))."""
        log_det = torch.zeros_like(z)
        for step in self.flows:
            z, log_gate = step(z, h)
            log_det = log_det + log_gate
        return z, log_det

    def _noise(
        self, shape: tuple[int, ...], generator: torch.Generator | None, uniform: bool = False
    ) -> torch.Tensor:
        """Standard normal (or uniform) draws on the model's device, from a CPU generator."""
        draw = torch.rand if uniform else torch.randn
        return draw(shape, generator=generator, dtype=self._dtype).to(self._device)

    def posterior(
        self,
        x: torch.Tensor,
        samples: int = 1,
        generator: torch.Generator | None = None,
        eps: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``samples`` draws per row from q(z | x): (z (B, S, L), log q per dimension (B, S, L)).

        log q is split per latent dimension (the terms sum to log q(z | x)) for free bits.
        ``eps`` (B, S, L), when given, is the base noise instead of draws from ``generator``.
        """
        check_rows(x, self.features, None)  # shape only: this runs in every training step
        mu, log_sigma, h = self.encode(x)
        b, s, latent = x.shape[0], samples, self.latent
        eps = self._noise((b, s, latent), generator) if eps is None else eps
        z = mu[:, None] + log_sigma.exp()[:, None] * eps
        log_q = standard_normal_log_prob(eps) - log_sigma[:, None]
        h = None if h is None else h[:, None].expand(b, s, -1).reshape(b * s, -1)
        z, log_det = self.flow(z.reshape(b * s, latent), h)
        return z.view(b, s, latent), log_q - log_det.view(b, s, latent)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Bernoulli logits (..., D) of p(x | z)."""
        return self.decoder(z)

    def log_likelihood(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x | z) (B, S) for x (B, D) and z (B, S, L)."""
        logits = self.decode(z)  # (B, S, D)
        # The Bernoulli head's log_prob, without the copy of x that flattening (B, S) would make
        x = x[:, None].expand_as(logits)
        return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)

    def _draw_x(self, logits: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """x (B, D) ~ p(x | z) from its logits, by the head's own inverse-CDF draw."""
        u = self._noise((logits.numel(), 1), generator, uniform=True)
        return self.head.draw(logits.reshape(-1, 1), u).view(logits.shape)

    def terms(
        self,
        x: torch.Tensor,
        samples: int = 1,
        generator: torch.Generator | None = None,
        eps: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(log p(x | z) (B, S), KL terms per dimension log q - log p(z) (B, S, L)) per draw."""
        z, log_q = self.posterior(x, samples, generator, eps)
        return self.log_likelihood(x, z), log_q - standard_normal_log_prob(z)

    # -- training (the DensityModel protocol) ---------------------------------------------------
    def beta(self, step: int, steps_per_epoch: int) -> float:
        """The KL weight of a training step: warmed up linearly from 0 over warmup_epochs."""
        if self.warmup_epochs < 1:
            return 1.0
        return min(1.0, step / (self.warmup_epochs * steps_per_epoch))

    def forward(
        self,
        x: torch.Tensor,
        step: int,
        steps_per_epoch: int,
        given: Condition = UNCONDITIONAL,
        noise: torch.Generator | None = None,
    ) -> torch.Tensor:
        """The training loss per row (B,): -(log p(x|z) - beta KL), one draw from ``noise``."""
        return -self.objective(x, self.beta(step, steps_per_epoch), noise)

    def objective(self, x: torch.Tensor, beta: float, noise: torch.Generator | None = None) -> torch.Tensor:
        """The training objective per row (B,) to maximise: log p(x|z) - beta * KL, one draw.

        With free bits (nats per latent dimension), each dimension's KL averaged over the batch
        costs at least ``free_bits`` (Kingma et al. 2016, eq. 15); the per-row values are built
        so that their mean is that objective.
        """
        rec, kl = self.terms(x, 1, noise)
        kl = kl[:, 0]  # (B, L)
        if self.free_bits > 0:
            batch_mean = kl.mean(0)
            kl = kl + (batch_mean.clamp_min(self.free_bits) - batch_mean)
        return rec[:, 0] - beta * kl.sum(-1)

    def schedule_terms(self, step: int, steps_per_epoch: int) -> dict[str, float]:
        return {"beta": self.beta(step, steps_per_epoch)}

    def patience_counts(self, step: int, steps_per_epoch: int) -> bool:
        """Only epochs on the full objective count: not those still warming the KL weight up."""
        return self.beta(step, steps_per_epoch) >= 1

    def epoch_line(self, train_loss: float, valid: dict[str, float], terms: dict[str, float]) -> str:
        """The training loss is -(reconstruction - beta KL), with the last step's beta."""
        return (
            f"train loss {train_loss:7.2f} (beta {terms['beta']:.2f})  valid ELBO {valid['elbo']:8.2f} "
            f"(rec {valid['reconstruction']:7.2f}, KL {valid['kl']:6.2f})"
        )

    @torch.no_grad()
    def validation_terms(
        self, x: torch.Tensor, given: Condition = UNCONDITIONAL, rows: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Per-row (B,) ELBO terms with one draw each; ``nll`` is -ELBO.

        Row r of the split (``rows``: the batch's indices in it) always gets the same draw,
        whatever the batch size, process count or epoch, so validation ELBOs compare exactly.
        """
        rows = torch.arange(x.shape[0]) if rows is None else rows
        g = torch.Generator()
        draws = [torch.randn(1, self.latent, generator=g.manual_seed(_EVAL_SEED + r)) for r in rows.tolist()]
        eps = torch.stack(draws).to(self._device, self._dtype)  # (B, 1, L)
        rec, kl = self.terms(x, 1, eps=eps)
        kl = kl.sum(-1)[:, 0]
        elbo = rec[:, 0] - kl
        return {"nll": -elbo, "elbo": elbo, "kl": kl, "reconstruction": rec[:, 0]}

    # -- evaluation, sampling, completion -------------------------------------------------------
    @torch.no_grad()
    def importance_log_prob(
        self,
        x: torch.Tensor,
        samples: int,
        generator: torch.Generator | None = None,
        chunk_rows: int = 20_000,
        row_seeds: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Importance-weighted log p(x) with ``samples`` draws from q (Burda et al. 2016):
        logmeanexp_k [log p(x, z_k) - log q(z_k | x)], and the ELBO as the mean of the same
        log-weights. Draws go through in chunks of at most ``chunk_rows`` (row, draw) pairs, so
        that K = 5000 needs no more memory than K = chunk_rows / B.

        ``row_seeds`` (B,), when given, seed each row's own draws instead of ``generator``: a
        row then gets the same estimate whatever batch it is evaluated in.

        Returns per-row (B,) ``log_px``, ``elbo``, ``kl`` and ``reconstruction``.
        """
        if samples < 1:
            raise ValueError("samples must be at least 1")
        check_rows(x, self.features, self.head)
        own = None if row_seeds is None else [torch.Generator().manual_seed(int(r)) for r in row_seeds]
        b = x.shape[0]
        per_chunk = max(1, min(samples, chunk_rows // max(1, b)))
        running = torch.full((b,), -math.inf, dtype=self._dtype, device=self._device)
        sums = {"rec": torch.zeros_like(running), "kl": torch.zeros_like(running)}
        done = 0
        while done < samples:
            s = min(per_chunk, samples - done)
            eps = None
            if own is not None:  # each row continues its own stream, chunk after chunk
                draws = [torch.randn(s, self.latent, generator=g, dtype=self._dtype) for g in own]
                eps = torch.stack(draws).to(self._device)
            rec, kl = self.terms(x, s, generator, eps=eps)  # (B, s), (B, s, L)
            kl = kl.sum(-1)
            running = torch.logaddexp(running, torch.logsumexp(rec - kl, 1))
            sums["rec"] += rec.sum(1)
            sums["kl"] += kl.sum(1)
            done += s
        rec, kl = sums["rec"] / samples, sums["kl"] / samples
        return {"log_px": running - math.log(samples), "elbo": rec - kl, "kl": kl, "reconstruction": rec}

    @property
    def log_prob_estimator(self) -> str:
        """How ``log_prob`` estimates log p(x) (``made score`` names it)."""
        k = self.importance_samples
        return f"importance-weighted, K={k} samples per row (a bound that tightens with K)"

    def log_prob(
        self,
        x: torch.Tensor,
        given: Condition = UNCONDITIONAL,
        rows: torch.Tensor | None = None,
        samples: int | None = None,
    ) -> torch.Tensor:
        """log p(x) (B,): the importance-weighted estimate with ``samples`` draws per row
        (default: ``importance_samples``), each row's draws seeded by its place ``rows`` (B,)
        (default: its place in ``x``), so a row's estimate does not depend on its batch."""
        given.check(self.classes, self.context_features, x.shape[0])
        seeds = torch.arange(x.shape[0]) if rows is None else rows.cpu()
        return self.importance_log_prob(x, samples or self.importance_samples, row_seeds=seeds)["log_px"]

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, means: bool = False) -> torch.Tensor:
        """``n`` draws (n, D) of x from p(z) p(x | z) in one pass; ``means`` gives p(x_d = 1 | z)."""
        logits = self.decode(self._noise((n, self.latent), generator))
        return torch.sigmoid(logits) if means else self._draw_x(logits, generator)

    @torch.no_grad()
    def impute(
        self, x: torch.Tensor, observed: torch.Tensor, steps: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Fill the dimensions not ``observed`` (bool (B, D)) by iterative imputation: start from
        a prior draw, then ``steps`` times draw z ~ q(z | x) and the missing x ~ p(x | z).

        Approximate: a pseudo-Gibbs chain whose stationary law is p(missing | observed) only
        when q is the exact posterior.
        """
        check_observed(observed, x)
        observed = observed.to(x.device)
        known = torch.where(observed, x, torch.zeros_like(x))
        check_rows(known, self.features, self.head, "x (its observed values)")
        filled = torch.where(observed, x, self.sample(x.shape[0], generator))
        for _ in range(steps):
            z, _ = self.posterior(filled, 1, generator)
            filled = torch.where(observed, x, self._draw_x(self.decode(z[:, 0]), generator))
        return filled

    # -- the commands (the DensityModel protocol) --------------------------------------------------
    def evaluate(
        self,
        x: torch.Tensor,
        given: Condition,
        batch_size: int,
        samples: int | None = None,
        seed: int | None = None,
        progress: Progress | None = None,
    ) -> dict[str, Any]:
        """-log p(x) by importance sampling with K draws from q(z | x) per image, and the ELBO
        terms from the same draws. Row r draws from its own stream (from ``seed`` and r), so the
        estimate does not depend on the batching."""
        k = self.importance_samples if samples is None else samples
        if k < 1:
            raise BadArgument("samples", f"must be at least 1 (got {k})")
        seed = 0 if seed is None else seed
        check_seed(seed)
        row_seeds = (seed * 1_000_003) % 2**62 + torch.arange(x.shape[0])
        drawn = lambda b, _g, rows: self.importance_log_prob(b, k, row_seeds=row_seeds[rows])  # noqa: E731
        means = evaluate_terms(self, x, batch_size, terms=drawn, progress=progress)
        return {
            "nll_nats": -means["log_px"],
            "estimator": f"importance-weighted, K={k} samples per image (a bound that tightens with K)",
            "samples": k,
            "seed": seed,
            "elbo_nats": means["elbo"],
            "reconstruction_nats": means["reconstruction"],
            "kl_nats": means["kl"],
        }

    def draw(
        self,
        n: int,
        generator: torch.Generator,
        given: Condition = UNCONDITIONAL,
        means: bool = False,
    ) -> torch.Tensor:
        given.check(self.classes, self.context_features, n)
        return self.sample(n, generator=generator, means=means)

    def sampler_name(self, means: bool = False) -> str:
        return "z from the prior, " + ("Bernoulli means p(x = 1 | z)" if means else "x from p(x | z)")

    def complete_rows(
        self,
        given: Condition,
        per_row: int,
        generator: torch.Generator,
        rounds: int | None = None,
        steps: int | None = None,
        truth: torch.Tensor | None = None,
    ) -> Completion:
        """``given``'s cells completed by iterative imputation: approximate, since q(z | x) is
        not the exact posterior (so nothing of ``truth`` is scored)."""
        if steps is not None:
            raise BadArgument("steps", "is for MADE runs: a VAE completes by iterative imputation (rounds)")
        rounds = IMPUTATION_ROUNDS if rounds is None else rounds
        if rounds < 1:
            raise BadArgument("rounds", f"must be at least 1 (got {rounds})")
        given.with_cells(None).check(self.classes, self.context_features, None)
        observed = given.observed
        x = torch.where(observed, given.cells, 0.0)  # type: ignore[arg-type]  # observed: cells given
        rows, seen = x.repeat_interleave(per_row, 0), observed.repeat_interleave(per_row, 0)
        values = self.impute(rows, seen, rounds, generator)
        return Completion(
            values,
            [APPROXIMATE] * x.shape[0],
            torch.full((x.shape[0],), math.nan, device=x.device),
            method=f"iterative imputation, {rounds} rounds of z ~ q(z | x) then the missing pixels "
            "~ p(x | z)",
        )


def build(
    cfg: Config,
    features: int,
    classes: int = 0,
    columns: tuple[ColumnLaw, ...] | None = None,
    context: int = 0,
) -> IAFVAE:
    """The VAE a config describes (model.kind: iaf_vae): model.* for each step's MADE, iaf.* the rest."""
    m, v = cfg.model, cfg.iaf
    return IAFVAE(
        features, latent=v.latent, encoder=v.encoder, decoder=v.decoder, context=v.context,
        steps=v.steps, step_hidden=m.hidden, direct=m.direct, ordering=m.ordering,
        hidden_degrees=m.hidden_degrees, warmup_epochs=v.warmup_epochs, free_bits=v.free_bits,
        importance_samples=v.importance_samples, seed=cfg.seed,
    )  # fmt: skip


def describe(cfg: Config, model: IAFVAE) -> str:
    """The "model:" line of training."""
    v = cfg.iaf
    return (
        f"{model.describe()}, encoder={list(v.encoder)} decoder={list(v.decoder)}, "
        f"KL warm-up {v.warmup_epochs} epochs, free bits {v.free_bits:g}"
    )


def step_jacobian(
    step: IAFStep, z: torch.Tensor, h: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(dz'/dz (L, L) by autograd, sum of log gates) of one step at one point z (L,)."""
    jac = rows_jacobian(lambda v: step(v, None if h is None else h.expand(v.shape[0], -1))[0], z)
    _, log_gate = step(z[None], None if h is None else h[None])
    return jac, log_gate.sum()


def verify_iaf(model: IAFVAE, points: int = 2, seed: int = 0) -> list[StepReport]:
    """Check every IAF step: its MADE (with context), and its Jacobian and log-determinant."""
    generator = torch.Generator().manual_seed(seed)
    reports = []
    for t, step in enumerate(model.flows):
        (made,) = verify_made(step.made, points=points, seed=seed + t)
        exact = copy.deepcopy(step).double().cpu()
        reports.append(
            triangular_report(t, made, exact, exact.made.ranks[0], exact.made.context, points, generator)
        )
    return reports


def verify(model: IAFVAE, points: int = 2) -> Verification:
    """``verify_iaf`` as the rows of `made verify-ar`'s table, one per IAF step."""
    reports = verify_iaf(model, points=points)
    return Verification(
        unit="IAF step",
        columns=[*MADE_COLUMNS, "dz'/dz off triangle", "log-det error"],
        rows=[[str(r.step), *made_cells(r.made), *r.cells()] for r in reports],
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
