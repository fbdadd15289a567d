"""The IAF-VAE: flow steps and their log-determinants, the posterior density, the importance-
weighted estimate against exact log p(x), sampling, training objective, and verify-ar."""

from __future__ import annotations

import math

import pytest
import torch

from made_cli.config import load_config
from made_cli.kinds import build_model
from made_cli.kinds.iaf_vae.vae import IAFVAE, step_jacobian, verify_iaf
from made_cli.train import train

from .conftest import all_binary, tamper


def _vae(features: int = 5, latent: int = 4, steps: int = 3, **kw) -> IAFVAE:
    args = {"latent": latent, "encoder": [16], "decoder": [16], "context": 3, "steps": steps,
            "step_hidden": [12, 12], "seed": 0}  # fmt: skip
    return IAFVAE(features, **{**args, **kw})


def _shake(model: IAFVAE, scale: float = 0.5) -> IAFVAE:
    """Move every weight off its initial value, so gates and m depend on z and h."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn_like(p))
        for net in model.made_nets():
            net.mask_weights()  # degree blocks read the masked entries as the zeros they must be
    return model


def test_the_gate_starts_near_0_88_whatever_the_input():
    model = _vae()
    x = torch.randint(0, 2, (64, 5)).float()
    _, _, h = model.encode(x)
    z = 3 * torch.randn(64, 4)
    for step in model.flows:
        _, log_gate = step(z, h)
        assert torch.allclose(log_gate.exp(), torch.full_like(log_gate, 0.88), atol=1e-6)


def test_orderings_reverse_between_steps():
    model = _vae(latent=6, steps=3, ordering="random")
    ranks = [step.made.ranks[0] for step in model.flows]
    assert torch.equal(ranks[1], 7 - ranks[0]) and torch.equal(ranks[2], 7 - ranks[1])
    assert not torch.equal(ranks[0], torch.arange(1, 7))  # random, then reversed


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_each_step_log_det_matches_autograd_and_finite_differences(seed):
    torch.manual_seed(seed)
    model = _shake(_vae(latent=5)).double()
    for step in model.flows:
        z = torch.randn(5, dtype=torch.float64)
        h = torch.randn(3, dtype=torch.float64)
        jac, log_det = step_jacobian(step, z, h)
        assert torch.allclose(torch.linalg.slogdet(jac)[1], log_det, atol=1e-10)
        # central differences, independent of autograd
        eps = 1e-6
        numeric = torch.stack([
            (step((z + eps * e)[None], h[None])[0][0] - step((z - eps * e)[None], h[None])[0][0]) / (2 * eps)
            for e in torch.eye(5, dtype=torch.float64)
        ], dim=1)  # fmt: skip
        assert torch.allclose(numeric, jac, atol=1e-6)
        assert abs(float(torch.linalg.slogdet(numeric.detach())[1] - log_det.detach())) < 1e-5
        # triangular in the step's ordering: z'_i depends on z_j only if j comes before i (or is i)
        ranks = step.made.ranks[0]
        forbidden = (ranks[None, :] > ranks[:, None]) & ~torch.eye(5, dtype=torch.bool)
        assert (jac[forbidden] == 0).all() and (jac[~forbidden] != 0).any()


def test_posterior_log_q_is_the_density_of_the_flowed_sample():
    """log q(z_T | x) = log N(eps) - sum log sigma - log|det dz_T/dz_0| over the whole flow."""
    # Gates well away from 0: with saturated gates the flow's Jacobian is too ill-conditioned
    # for slogdet to check a log-det to 1e-10.
    model = _shake(_vae(latent=4), 0.3).double()
    x = torch.randint(0, 2, (3, 5)).double()
    z, log_q = model.posterior(x, 2, torch.Generator().manual_seed(7))
    eps = torch.randn(3, 2, 4, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    mu, log_sigma, h = model.encode(x)
    for b in range(3):
        for s in range(2):
            z0 = mu[b] + log_sigma[b].exp() * eps[b, s]
            flow = lambda v, b=b: model.flow(v[None], h[b][None])[0][0]  # noqa: E731
            assert torch.allclose(flow(z0), z[b, s])
            jac = torch.autograd.functional.jacobian(flow, z0)
            base = torch.distributions.Normal(mu[b], log_sigma[b].exp()).log_prob(z0).sum()
            assert torch.allclose(log_q[b, s].sum(), base - torch.linalg.slogdet(jac)[1], atol=1e-10)


def _exact_log_px(model: IAFVAE, x: torch.Tensor, grid: int = 801, width: float = 9.0) -> torch.Tensor:
    """log p(x) = log of the integral of p(x | z) N(z) dz by quadrature (latent 1)."""
    z = torch.linspace(-width, width, grid, dtype=torch.float64)[:, None]
    logits = model.decode(z)  # (G, D)
    log_lik = -torch.nn.functional.binary_cross_entropy_with_logits(
        logits[None].expand(x.shape[0], -1, -1), x[:, None].expand(-1, grid, -1), reduction="none"
    ).sum(-1)  # (B, G)
    log_prior = -0.5 * z[:, 0] ** 2 - 0.5 * math.log(2 * math.pi)
    return torch.logsumexp(log_lik + log_prior, 1) + math.log(z[1, 0] - z[0, 0])


def test_importance_weighted_estimate_reaches_the_exact_log_likelihood():
    torch.manual_seed(0)
    model = _shake(_vae(features=3, latent=1, steps=2, context=2), 0.3).double()
    x = all_binary(3).double()
    exact = _exact_log_px(model, x)
    assert abs(float(torch.logsumexp(exact.detach(), 0))) < 1e-9  # the quadrature is a distribution over 2^3
    # the weights are heavy-tailed (q is broader than the posterior): K = 10^5 gives about 0.015
    out = model.importance_log_prob(x, 100_000, torch.Generator().manual_seed(0), chunk_rows=200_000)
    assert torch.allclose(out["log_px"], exact, atol=0.03)
    assert (out["log_px"] >= out["elbo"]).all()


def test_importance_weighted_estimate_is_at_least_the_elbo_and_rises_with_k():
    torch.manual_seed(0)
    model = _shake(_vae(features=8, latent=3, steps=2), 0.3)
    x = torch.randint(0, 2, (400, 8)).float()
    gen = torch.Generator().manual_seed(0)
    means = {}
    for k in (1, 10, 100):
        out = model.importance_log_prob(x, k, gen)
        assert (out["log_px"] >= out["elbo"] - 1e-4).all()  # Jensen, per row, same draws
        assert torch.allclose(out["elbo"], out["reconstruction"] - out["kl"])
        means[k] = float(out["log_px"].mean())
    assert means[1] < means[10] < means[100]
    # K = 1 is the ELBO itself: its mean agrees with a fresh ELBO estimate
    elbo = float(model.importance_log_prob(x, 100, gen)["elbo"].mean())
    assert abs(means[1] - elbo) < 0.5


def test_chunked_draws_give_exactly_the_estimate_of_all_draws_at_once(monkeypatch):
    """With known log-weights fed chunk by chunk, log p(x) is logmeanexp and the ELBO the mean,
    whatever the chunk size (a dropped or repeated chunk would show)."""
    model = _vae(features=4, latent=2)
    x = torch.zeros(3, 4)
    weights = 5 * torch.randn(3, 1000)  # (B, K) log p(x, z_k) - log q(z_k | x)
    for chunk_rows in (3, 3 * 7, 3 * 999, 10**6):
        drawn = {"n": 0}

        def fixed_terms(x, samples, generator=None, eps=None, drawn=drawn):
            w = weights[:, drawn["n"] : drawn["n"] + samples]
            drawn["n"] += samples
            return w, torch.zeros(3, samples, 2)

        monkeypatch.setattr(model, "terms", fixed_terms)
        out = model.importance_log_prob(x, 1000, chunk_rows=chunk_rows)
        assert drawn["n"] == 1000
        assert torch.allclose(out["log_px"], torch.logsumexp(weights, 1) - math.log(1000), atol=1e-5)
        assert torch.allclose(out["elbo"], weights.mean(1), atol=1e-5)


def test_validation_draws_depend_on_the_row_not_the_batching():
    from made_cli.evaluation import evaluate_terms

    model = _shake(_vae(features=6, latent=3), 0.3)
    x = torch.randint(0, 2, (50, 6)).float()
    results = [evaluate_terms(model, x, batch_size) for batch_size in (50, 7, 1)]
    for other in results[1:]:
        assert all(abs(other[k] - results[0][k]) < 1e-5 for k in results[0])


def test_prior_samples_follow_the_model():
    """Frequencies of 40000 draws over all 2^3 values against p(x) by quadrature."""
    torch.manual_seed(0)
    model = _shake(_vae(features=3, latent=1, steps=1, context=2), 0.6).double()
    draws = model.sample(40_000, torch.Generator().manual_seed(0))
    assert set(draws.unique().tolist()) <= {0.0, 1.0}
    cells = (draws * torch.tensor([1.0, 2.0, 4.0], dtype=torch.float64)).sum(1).long()
    freq = torch.bincount(cells, minlength=8).double() / draws.shape[0]
    exact = _exact_log_px(model, all_binary(3).double()).exp().detach()
    assert 0.5 * float((freq - exact).abs().sum()) < 0.015
    means = model.sample(5, torch.Generator().manual_seed(0), means=True)
    assert ((means > 0) & (means < 1)).all() and not set(means.unique().tolist()) <= {0.0, 1.0}


def test_imputation_keeps_the_observed_part_and_fills_the_rest():
    model = _vae(features=6, latent=2)
    x = torch.randint(0, 2, (10, 6)).float()
    observed = torch.zeros(10, 6, dtype=torch.bool)
    observed[:, :3] = True
    out = model.impute(x, observed, 4, torch.Generator().manual_seed(0))
    assert torch.equal(out[:, :3], x[:, :3])
    assert set(out.unique().tolist()) <= {0.0, 1.0}


def test_training_objective_warms_up_and_frees_bits():
    model = _vae(features=6, latent=3, steps=1, warmup_epochs=2, free_bits=0.5)
    assert [model.beta(s, 10) for s in (0, 5, 10, 20, 40)] == [0.0, 0.25, 0.5, 1.0, 1.0]
    assert _vae(warmup_epochs=0).beta(0, 10) == 1.0
    assert [model.patience_counts(s, 10) for s in (19, 20)] == [False, True]
    x = torch.randint(0, 2, (32, 6)).float()
    torch.manual_seed(3)
    objective = model.objective(x, 0.7)
    torch.manual_seed(3)
    rec, kl = model.terms(x)
    per_dim = kl[:, 0].mean(0)  # (L,)
    expected = rec[:, 0].mean() - 0.7 * per_dim.clamp_min(0.5).sum()
    assert torch.allclose(objective.mean(), expected, atol=1e-5)
    # KL under its free bits sends no gradient: the encoder learns from reconstruction alone
    for free_bits, same in ((100.0, True), (0.0, False)):
        vae = _vae(features=6, latent=3, steps=1, free_bits=free_bits)
        params = list(vae.encoder.parameters())
        torch.manual_seed(3)
        full = torch.autograd.grad(vae.objective(x, 1.0).mean(), params)
        torch.manual_seed(3)
        rec_only = torch.autograd.grad(vae.terms(x)[0].mean(), params)
        assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(full, rec_only, strict=True)) == same


def test_verify_iaf_passes_and_catches_a_tampered_step():
    model = _shake(_vae(latent=5))
    assert all(r.ok and r.log_det_error < 1e-9 for r in verify_iaf(model))
    output = model.flows[1].made.output
    tamper(output, output.mask == 0, count=None)  # every forbidden connection switched on
    reports = verify_iaf(model)
    assert reports[0].ok and not reports[1].ok
    assert reports[1].made.forbidden_paths > 0 and reports[1].off_triangle > 0


def test_config_builds_the_baseline_and_refuses_what_does_not_fit(tmp_path):
    baseline = build_model(load_config(None, ["model.kind=iaf_vae", "iaf.steps=0"]), 784)
    iaf = build_model(load_config(None, ["model.kind=iaf_vae"]), 784)
    assert isinstance(baseline, IAFVAE) and len(baseline.flows) == 0 and baseline.context_size == 0
    # everything but the flow (and the context h that only feeds it) is equal
    flow_params = sum(p.numel() for p in iaf.flows.parameters())
    context_params = iaf.context_size * (iaf.encoder[-1].in_features + 1)
    total = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert total(iaf) - flow_params - context_params == total(baseline)
    from made_cli.errors import UsageError

    for overrides, message in [
        (["iaf.steps=3"], "iaf section is for model.kind: iaf_vae"),
        (["model.kind=iaf_vae", "model.num_masks=2", "model.ordering=random"], "model.num_masks"),
        (["model.kind=iaf_vae", "iaf.free_bits=-1"], "iaf.free_bits"),
        (["model.kind=iaf_vae", "iaf.latent=0"], "iaf.latent"),
    ]:
        with pytest.raises(UsageError, match=message):
            load_config(None, overrides)


def test_validation_elbo_is_deterministic_and_training_improves_it(tmp_path):
    cfg = load_config(None, [
        "model.kind=iaf_vae", "data.name=synthetic", "data.features=10", "data.size=1000",
        "model.hidden=[16]", "iaf.latent=3", "iaf.encoder=[32]", "iaf.decoder=[32]", "iaf.context=4",
        "iaf.warmup_epochs=1", "train.epochs=4", "train.batch_size=50", "train.lr=0.01",
    ])  # fmt: skip
    result = train(cfg, tmp_path / "run")
    assert result.measure == "-ELBO" and result.estimator.startswith("-ELBO")
    import json

    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    valid = [m for m in metrics if m["split"] == "valid"]
    assert {"elbo", "kl", "reconstruction", "beta", "train_loss"} <= set(valid[0])
    assert valid[-1]["elbo"] > valid[0]["elbo"]
    assert all(abs(m["nll"] + m["elbo"]) < 1e-9 for m in valid)
    assert all(abs(m["elbo"] - (m["reconstruction"] - m["kl"])) < 1e-6 for m in valid)
    assert [m["beta"] for m in valid[:2]] == [19 / 20, 1.0]  # the KL weight of each epoch's last step
    assert metrics[-1]["split"] == "test"


def test_patience_waits_for_the_end_of_warm_up(tmp_path, monkeypatch):
    """A validation ELBO that only gets worse stops training one epoch after warm-up, not before."""
    from made_cli.train import Trainer

    worse = iter(range(100))
    real = Trainer._evaluate

    def getting_worse(self, model, split):
        out = real(self, model, split)
        return {**out, "nll": float(next(worse))} if split == "valid" and model is self.model else out

    monkeypatch.setattr(Trainer, "_evaluate", getting_worse)
    cfg = load_config(None, [
        "model.kind=iaf_vae", "data.name=synthetic", "data.features=6", "data.size=200",
        "model.hidden=[8]", "iaf.latent=2", "iaf.encoder=[8]", "iaf.decoder=[8]", "iaf.warmup_epochs=3",
        "train.epochs=8", "train.patience=1", "train.batch_size=50",
    ])  # fmt: skip
    result = train(cfg, tmp_path / "run")
    assert (result.best_epoch, result.epochs_run) == (1, 4)


def test_the_python_api_refuses_the_wrong_width_and_non_binary_values():
    model = _vae(features=5)
    with pytest.raises(ValueError, match=r"must be \(rows, 5\); got shape \(2, 4\)"):
        model.posterior(torch.zeros(2, 4))
    with pytest.raises(ValueError, match="0 or 1"):
        model.importance_log_prob(torch.full((2, 5), 0.5), samples=3)
    observed = torch.ones(2, 5, dtype=torch.bool)
    with pytest.raises(ValueError, match="0 or 1"):
        model.impute(torch.full((2, 5), 2.0), observed, steps=1)
