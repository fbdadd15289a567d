"""The work behind the commands (commands.py): evaluation, masks, listing, on real tiny runs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from made_cli import commands
from made_cli.config import load_config
from made_cli.errors import BadArgument, UsageError
from made_cli.queries import run_data
from made_cli.runs import load_run
from made_cli.train import train

TINY = ["data.name=synthetic", "data.features=8", "data.size=300", "model.hidden=[16]", "train.epochs=1",
        "train.batch_size=50"]  # fmt: skip
TINY_VAE = [*TINY, "model.kind=iaf_vae", "iaf.latent=2", "iaf.encoder=[8]", "iaf.decoder=[8]",
            "iaf.context=2", "iaf.importance_samples=7"]  # fmt: skip


def _run(tmp_path: Path, overrides: list[str]):
    train(load_config(None, overrides), tmp_path / "run")
    return load_run(tmp_path / "run")


def test_evaluate_passes_take_the_configs_eval_batch_size(tmp_path: Path, monkeypatch) -> None:
    run = _run(tmp_path, [*TINY, "train.eval_batch_size=7"])
    seen = []
    real = run.model.log_prob

    def spy(x, *args, **kwargs):
        seen.append(x.shape[0])
        return real(x, *args, **kwargs)

    monkeypatch.setattr(run.model, "log_prob", spy)
    report = commands.evaluate_run(run, "test")
    assert max(seen) == 7 and report["examples"] == 60
    with torch.no_grad():
        whole = float(-real(run_data(run).test).mean())
    assert report["nll_nats"] == pytest.approx(whole, abs=1e-5)


def test_a_vaes_estimate_does_not_depend_on_the_batching(tmp_path: Path, monkeypatch) -> None:
    """Each row draws from its own stream, so eval_batch_size changes the passes, not the number."""
    run = _run(tmp_path, TINY_VAE)
    seen = []
    real = run.model.importance_log_prob

    def spy(x, *args, **kwargs):
        seen.append(x.shape[0])
        return real(x, *args, **kwargs)

    monkeypatch.setattr(run.model, "importance_log_prob", spy)
    small = commands.evaluate_run(run, "valid", batch_size=7)
    assert max(seen) == 7
    large = commands.evaluate_run(run, "valid", batch_size=1000)
    assert small["samples"] == 7 and small["seed"] == 0
    for key in ("nll_nats", "elbo_nats", "kl_nats", "reconstruction_nats"):
        assert small[key] == pytest.approx(large[key], abs=1e-5), key
    other = commands.evaluate_run(run, "valid", batch_size=7, seed=1)
    assert other["nll_nats"] != small["nll_nats"]  # the seed does choose the draws


def test_observed_masks_and_their_refusals() -> None:
    g = torch.Generator().manual_seed(0)
    top = commands.observed_mask("top", 16, (4, 4), 2, g)
    assert top.shape == (2, 16) and top[0, :8].all() and not top[0, 8:].any()
    centre = commands.observed_mask("centre", 16, (4, 4), 1, g).view(4, 4)
    assert not centre[1:3, 1:3].any() and centre.sum() == 12
    assert commands.observed_mask("random", 1000, None, 1, g, fraction=0.25).float().mean() == pytest.approx(
        0.25, abs=0.05
    )
    with pytest.raises(UsageError, match="needs image data"):
        commands.observed_mask("left", 9, None, 1, g)
    with pytest.raises(BadArgument, match="mask must be one of") as refused:
        commands.observed_mask("diagonal", 16, (4, 4), 1, g)
    assert refused.value.worded(lambda a: f"--{a}").startswith("--mask must be one of")


def test_list_runs_reads_every_run_and_says_which_do_not_load(tmp_path: Path) -> None:
    _run(tmp_path, TINY)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.yaml").write_text("name: broken\n")
    (tmp_path / "broken" / "checkpoints").mkdir()
    (tmp_path / "broken" / "checkpoints" / "best.pt").write_bytes(b"junk")
    rows = {Path(r["run"]).name: r for r in commands.list_runs(tmp_path)}
    assert rows["run"]["checkpoint"] == "ok" and rows["run"]["test_nll"] is not None
    assert rows["run"]["record"]["invocations"][0]["command"] is None  # trained from Python
    assert rows["broken"]["checkpoint"].startswith("does not load")
    for name, text in (("list", "- 1\n- 2\n"), ("flow-3", "flow: 3\nmodel: [1]\nspline: x\n")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.yaml").write_text(text)  # hand-edited into nonsense
    rows = {Path(r["run"]).name: r for r in commands.list_runs(tmp_path)}
    assert rows["list"]["model"].startswith("MADE") and rows["flow-3"]["data"] == "?"
