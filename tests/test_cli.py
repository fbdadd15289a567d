"""Every command through typer's CliRunner on a tiny config, and the bad-input cases."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from made_cli.cli import app

from .conftest import REPO, tamper

runner = CliRunner()


@pytest.fixture
def trained(tmp_path: Path, tiny_config: Path, monkeypatch) -> Path:
    """Train the tiny config in a fresh working directory; return the run directory."""
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["train", str(tiny_config), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "test NLL" in result.output and "exact, single mask" in result.output
    (run,) = list((tmp_path / "runs").iterdir())
    return run


def test_train_writes_a_complete_run_directory(trained: Path) -> None:
    assert (trained / "config.yaml").is_file()
    assert (trained / "checkpoints" / "last.pt").is_file()
    assert (trained / "checkpoints" / "best.pt").is_file()
    assert (trained / "logs" / "train.log").read_text().count("epoch") >= 2
    lines = [json.loads(x) for x in (trained / "metrics.jsonl").read_text().splitlines()]
    assert [m["split"] for m in lines] == ["valid", "valid", "test"]
    assert {"step", "epoch", "nll", "bpd", "lr", "seconds"} <= set(lines[0])
    state = torch.load(trained / "checkpoints" / "best.pt", weights_only=True)
    assert state["config"]["model"]["hidden"] == [16, 16]
    assert "net.ranks" in state["model"]


def test_evaluate_json_defaults_to_newest_run(trained: Path) -> None:
    result = runner.invoke(app, ["evaluate", "--split", "valid", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["split"] == "valid" and report["estimator"] == "exact, single mask"
    assert report["nll_nats"] > 0 and report["bits_per_dim"] > 0
    assert json.loads((trained / "evaluate.json").read_text())["valid"] == report
    text = runner.invoke(app, ["evaluate", str(trained)])
    assert text.exit_code == 0 and "test NLL" in text.output


def test_sample_is_repeatable_with_a_seed(trained: Path) -> None:
    first = runner.invoke(app, ["sample", "--n", "8", "--seed", "3"])
    assert first.exit_code == 0, first.output
    a = np.load(trained / "samples" / "seed3-n8.npy")
    (trained / "samples" / "seed3-n8.npy").unlink()  # the second run must write it anew
    second = runner.invoke(app, ["sample", "--n", "8", "--seed", "3"])
    assert second.exit_code == 0, second.output
    b = np.load(trained / "samples" / "seed3-n8.npy")
    assert a.shape == (8, 9) and np.array_equal(a, b)


def test_complete_and_verify_and_runs(trained: Path) -> None:
    result = runner.invoke(app, ["complete", "--half", "--n", "4", "--per-image", "2"])
    assert result.exit_code == 0, result.output
    # the tiny config uses a random ordering: the top half is not generated first, so chains run
    assert "Markov chain for 4 of 4 rows: 200 Metropolis-Hastings moves each" in result.output
    arrays = np.load(trained / "completions" / "top-seed0-n4-steps200.npz")
    assert arrays["completions"].shape == (4, 2, 9)
    observed = arrays["observed"][0]
    assert (arrays["completions"][:, :, observed] == arrays["originals"][:, None, observed]).all()

    verify = runner.invoke(app, ["verify-ar"])
    assert verify.exit_code == 0, verify.output
    assert "satisfy the autoregressive property" in verify.output
    assert json.loads((trained / "verify-ar.json").read_text())["ok"] is True

    listing = runner.invoke(app, ["runs"])
    assert listing.exit_code == 0 and trained.name in listing.output


def test_complete_on_natural_order_reports_exact_nll_and_png(tmp_path, tiny_config, monkeypatch):
    monkeypatch.chdir(tmp_path)
    trained = runner.invoke(
        app, ["train", str(tiny_config), "model.ordering=natural", "data.features=16", "train.epochs=1"]
    )
    assert trained.exit_code == 0, trained.output
    result = runner.invoke(app, ["complete", "--n", "3"])
    assert result.exit_code == 0, result.output
    assert "conditional NLL of the true missing part" in result.output
    (run,) = list((tmp_path / "runs").iterdir())
    assert (run / "completions" / "top-seed0-n3.png").is_file()  # 16 dims show as 4x4 images


def test_verify_ar_on_a_config_and_on_a_corrupt_checkpoint(trained: Path, tiny_config: Path):
    ok = runner.invoke(app, ["verify-ar", str(tiny_config)])
    assert ok.exit_code == 0, ok.output
    path = trained / "checkpoints" / "best.pt"
    path.write_bytes(b"garbage")
    bad = runner.invoke(app, ["verify-ar", str(path)])
    assert bad.exit_code == 2
    assert bad.stderr.count("\n") == 1 and "corrupt or unsafe checkpoint" in bad.stderr


def test_verify_ar_exits_1_on_a_tampered_mask(trained: Path, monkeypatch) -> None:
    import made_cli.verify as verify
    from made_cli import degrees as deg

    real = verify.verify_made

    def tamper_then_verify(net, points):
        tamper(net.direct, ~deg.allowed(net.ranks[net.member]))  # one forbidden connection switched on
        return real(net, points=points)

    monkeypatch.setattr(verify, "verify_made", tamper_then_verify)
    result = runner.invoke(app, ["verify-ar"])
    assert result.exit_code == 1
    assert "FAIL" in result.output and "autoregressive property violated" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "missing.yaml"], "config file not found"),
        (["train", "{cfg}", "model.hiden=[3]"], "did you mean 'model.hidden'"),
        (["train", "{cfg}", "train.epochs=ten"], "train.epochs must be an integer"),
        (["train", "{cfg}", "--device", "tpu"], "--device must be auto, cpu or cuda"),
        (["evaluate"], "no runs under runs/"),
        (["evaluate", "nowhere"], "run not found: nowhere"),
        (["sample", "nowhere"], "run not found"),
        (["verify-ar", "nowhere"], "run not found"),
        (["train", "{bad}"], "malformed YAML"),
    ],
)
def test_bad_input_gives_exit_2_and_one_line(tmp_path, monkeypatch, tiny_config, args, message):
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [\n")
    args = [a.format(cfg=tiny_config, bad=bad) for a in args]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output


@pytest.mark.parametrize(
    "args",
    [["sample", "--n", "abc"], ["train"], ["evaluate", "--bogus"], ["nosuchcommand"],
     ["verify-ar", "--points", "0"]],
)  # fmt: skip
def test_parser_errors_through_the_real_entry_point_are_one_line(tmp_path, args) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}  # this checkout, whatever pip points at
    result = subprocess.run([sys.executable, "-m", "made_cli", *args], capture_output=True,
                            text=True, cwd=tmp_path, timeout=120, env=env)  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    command = args[0] if args[0] != "nosuchcommand" else ""
    assert f"(see: made {command} --help)".replace("  ", " ") in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"junk", "corrupt or unsafe checkpoint"),
        (b"", "corrupt or unsafe checkpoint"),
        ("no_config", "missing config"),
    ],
)
def test_any_corrupt_checkpoint_gives_exit_2_naming_it(trained: Path, content, message) -> None:
    path = trained / "checkpoints" / "best.pt"
    if content == "no_config":
        state = torch.load(path, weights_only=True)
        del state["config"]
        torch.save(state, path)
    else:
        path.write_bytes(content)
    result = runner.invoke(app, ["sample", str(trained)])
    assert result.exit_code == 2, result.output
    assert message in result.stderr and str(path) in result.stderr


def test_a_loose_checkpoint_writes_beside_itself(trained: Path, tmp_path: Path) -> None:
    loose = tmp_path / "elsewhere" / "model.pt"
    loose.parent.mkdir()
    loose.write_bytes((trained / "checkpoints" / "best.pt").read_bytes())
    result = runner.invoke(app, ["sample", str(loose), "--n", "2"])
    assert result.exit_code == 0, result.output
    assert (loose.parent / "samples" / "seed0-n2.npy").is_file()
    assert not (tmp_path / "samples").exists()


def test_a_failed_training_leaves_no_empty_run(tmp_path, tiny_config, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["train", str(tiny_config), "data.name=npz", "data.path=missing.npz"])
    assert result.exit_code == 2 and "data file not found" in result.stderr
    assert not (tmp_path / "runs").exists()  # neither the run nor the runs/ made for it
    seed = runner.invoke(app, ["train", str(tiny_config), "--run-dir", str(tiny_config)])
    assert seed.exit_code == 2 and "is a file" in seed.stderr


def test_print_config_shows_resolved_overrides(tiny_config: Path) -> None:
    result = runner.invoke(app, ["train", str(tiny_config), "model.hidden=[4]", "--print-config"])
    assert result.exit_code == 0
    assert "- 4" in result.output and "name: tiny" in result.output


def test_help_shows_an_example_for_every_command() -> None:
    for command in ("train", "evaluate", "sample", "complete", "verify-ar", "runs"):
        result = runner.invoke(app, [command, "--help"])
        assert result.exit_code == 0 and "Example: made" in result.output, command
        assert "<bool>" not in result.output, command  # a flag takes no value
    complete = runner.invoke(app, ["complete", "--help"], env={"COLUMNS": "200"})
    assert "test rows" in complete.output and "pixels" in complete.output  # tables and images


def test_label_conditional_run_samples_a_class(tmp_path: Path, tiny_config: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["train", str(tiny_config), "model.condition_on=label"])
    assert result.exit_code == 0, result.output
    assert "given the label" in result.output
    result = runner.invoke(app, ["evaluate", "--json"])
    report = json.loads(result.stdout)
    assert report["estimator"] == "exact, single mask, given the label"
    assert report["marginal_estimator"] == "exact, single mask, label summed out over 4 classes"
    assert report["marginal_nll_nats"] > report["nll_nats"]  # knowing the label helps here
    result = runner.invoke(app, ["sample", "--n", "8", "--label", "2"])
    assert result.exit_code == 0, result.output
    (run,) = list((tmp_path / "runs").iterdir())
    assert np.load(run / "samples" / "seed0-n8-label2.npy").shape == (8, 9)
    assert (np.load(run / "samples" / "seed0-n8-label2-labels.npy") == 2).all()
    result = runner.invoke(app, ["sample", "--n", "8"])  # the classes in turn
    assert np.load(run / "samples" / "seed0-n8-labels.npy").tolist() == [0, 1, 2, 3, 0, 1, 2, 3]
    result = runner.invoke(app, ["sample", "--label", "4"])
    assert result.exit_code == 2 and "--label must be between 0 and 3" in result.stderr
    result = runner.invoke(app, ["complete", "--mask", "bottom", "--n", "5", "--steps", "0"])
    assert result.exit_code == 0, result.output
    assert "approximate completion for 5 of 5 rows" in result.output


def test_completion_masks_and_their_errors(trained: Path) -> None:
    result = runner.invoke(app, ["complete", "--mask", "random", "--fraction", "0.3", "--n", "4"])
    assert result.exit_code == 0, result.output
    arrays = np.load(trained / "completions" / "random-seed0-n4-steps200.npz")
    assert arrays["observed"].shape == (4, 9) and not (arrays["observed"] == arrays["observed"][0]).all()
    assert "observed: random (30% observed at random)" in result.output
    for args, message in [
        (["--mask", "left"], "--mask left needs image data"),
        (["--half", "--mask", "bottom"], "--half is --mask top"),
        (["--mask", "random", "--fraction", "1.5"], "--fraction must be between 0 and 1"),
        (["--mask", "diagonal"], "--mask must be one of top, bottom, left, right, centre, random"),
        (["--mask", "top", "--fraction", "0.3"], "--fraction goes with --mask random, not --mask top"),
    ]:
        result = runner.invoke(app, ["complete", *args])
        assert result.exit_code == 2, args
        assert message in result.stderr and result.stderr.count("\n") == 1
    result = runner.invoke(app, ["sample", "--label", "1"])
    assert result.exit_code == 2 and "not conditioned on labels" in result.stderr


@pytest.mark.parametrize("head", ["gaussian", "mog"])
def test_real_valued_npz_through_every_command(tmp_path: Path, monkeypatch, head: str) -> None:
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    base = rng.normal(size=(300, 1))
    rows = base + 0.1 * rng.normal(size=(300, 16))  # strongly correlated dimensions
    np.savez(tmp_path / "real.npz", train=rows[:250], test=rows[250:])
    config = tmp_path / "real.yaml"
    config.write_text(
        f"data: {{name: npz, path: {tmp_path / 'real.npz'}, values: real}}\n"
        f"model: {{head: {head}, hidden: [32]}}\ntrain: {{epochs: 20, batch_size: 50, lr: 0.005}}\n"
    )
    result = runner.invoke(app, ["train", str(config), "--run-dir", "r"])
    assert result.exit_code == 0, result.output
    assert "bits/dim" not in result.output  # real values have none
    result = runner.invoke(app, ["evaluate", "r", "--json"])
    report = json.loads(result.stdout)
    assert report["bits_per_dim"] is None and report["values"] == "real"
    assert report["nll_nats"] < 16 * 1.42  # far below independent unit Gaussians (1.42 nats each)
    assert runner.invoke(app, ["sample", "r", "--n", "16"]).exit_code == 0
    samples = np.load(tmp_path / "r" / "samples" / "seed0-n16.npy")
    assert samples.dtype == np.float32 and (tmp_path / "r" / "samples" / "seed0-n16.png").is_file()
    result = runner.invoke(app, ["complete", "r", "--mask", "centre", "--n", "2", "--steps", "0"])
    assert result.exit_code == 0, result.output
    assert "approximate completion for 2 of 2 images" in result.output
    chained = runner.invoke(app, ["complete", "r", "--mask", "centre", "--n", "2", "--steps", "20"])
    assert chained.exit_code == 0 and "Markov chain for 2 of 2 images: 20 Metropolis" in chained.output
    assert runner.invoke(app, ["verify-ar", "r"]).exit_code == 0


@pytest.fixture
def vae_run(tmp_path: Path, monkeypatch) -> Path:
    """A tiny IAF-VAE on synthetic bits, trained in a fresh working directory."""
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "iaf.yaml"
    config.write_text(
        "name: tiny-iaf\ndata: {name: synthetic, features: 9, size: 600}\n"
        "model: {kind: iaf_vae, hidden: [12], ordering: random}\n"
        "iaf: {latent: 3, encoder: [16], decoder: [16], context: 4, steps: 2, warmup_epochs: 1,\n"
        "      importance_samples: 50}\n"
        "train: {epochs: 2, batch_size: 50, lr: 0.01, patience: 2}\n"
    )
    result = runner.invoke(app, ["train", str(config), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "test -ELBO" in result.output and "upper bound" in result.output
    (run,) = list((tmp_path / "runs").iterdir())
    return run


def test_a_vae_through_every_command(vae_run: Path) -> None:
    ev = runner.invoke(app, ["evaluate", "--json", "--samples", "20"])
    assert ev.exit_code == 0, ev.output
    report = json.loads(ev.stdout)
    assert report["samples"] == 20 and "K=20" in report["estimator"]
    assert -report["nll_nats"] >= report["elbo_nats"] > -20  # log p(x) bound at least the ELBO
    text = runner.invoke(app, ["evaluate", str(vae_run)])  # K from the config
    assert text.exit_code == 0 and "K=50 samples" in text.output and "test ELBO" in text.output

    for args, stem in ((["--n", "6"], "seed0-n6"), (["--n", "6", "--means"], "seed0-n6-means")):
        out = runner.invoke(app, ["sample", *args])
        assert out.exit_code == 0, out.output
        x = np.load(vae_run / "samples" / f"{stem}.npy")
        assert x.shape == (6, 9)
    binary, means = (np.load(vae_run / "samples" / f"{s}.npy") for s in ("seed0-n6", "seed0-n6-means"))
    assert set(np.unique(binary)) <= {0, 1} and ((means > 0) & (means < 1)).all()

    comp = runner.invoke(app, ["complete", "--half", "--n", "4", "--rounds", "3"])
    assert comp.exit_code == 0, comp.output
    assert "approximate completion for all 4 rows: iterative imputation, 3 rounds" in comp.output
    saved = np.load(vae_run / "completions" / "top-seed0-n4.npz")
    observed = saved["observed"][:, None].repeat(3, 1)
    originals = saved["originals"][:, None].repeat(3, 1)
    assert (saved["completions"][observed] == originals[observed]).all() and not saved["exact"].any()

    ver = runner.invoke(app, ["verify-ar"])
    assert ver.exit_code == 0, ver.output
    assert "all 2 IAF step(s) satisfy" in ver.output
    assert json.loads((vae_run / "verify-ar.json").read_text())["ok"] is True
    listed = runner.invoke(app, ["runs"])
    assert listed.exit_code == 0 and "-ELBO" in listed.output

    resumed = runner.invoke(app, ["train", "--resume", str(vae_run), "train.epochs=3"])
    assert resumed.exit_code == 0, resumed.output
    splits = [json.loads(line)["split"] for line in (vae_run / "metrics.jsonl").read_text().splitlines()]
    assert splits == ["valid", "valid", "valid", "test"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["sample", "--means"], "--means is for VAE runs"),
        (["evaluate", "--samples", "5"], "--samples and --seed are for VAE runs"),
        (["evaluate", "--seed", "5"], "--samples and --seed are for VAE runs"),
        (["complete", "--rounds", "5"], "--rounds is for VAE runs"),
    ],
)
def test_vae_options_on_a_made_run_are_refused(trained: Path, args: list[str], message: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and message in result.output


def test_vae_option_values_are_checked(vae_run: Path) -> None:
    for args, message in (
        (["evaluate", "--samples", "0"], "--samples must be at least 1"),
        (["complete", "--rounds", "0"], "--rounds must be at least 1"),
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 2 and message in result.output


def test_verify_ar_on_the_baseline_vae_has_nothing_to_check(tmp_path: Path) -> None:
    config = tmp_path / "vae.yaml"
    config.write_text("data: {name: synthetic, features: 6}\nmodel: {kind: iaf_vae}\niaf: {steps: 0}\n")
    result = runner.invoke(app, ["verify-ar", str(config)])
    assert result.exit_code == 0 and "no IAF steps" in result.output


def test_the_shipped_iaf_config_verifies(data_root: Path, monkeypatch) -> None:
    monkeypatch.setenv("MADE_DATA_DIR", str(data_root))
    result = runner.invoke(app, ["verify-ar", str(REPO / "configs" / "iaf.yaml")])
    assert result.exit_code == 0, result.output
    assert "all 2 IAF step(s) satisfy" in result.output


# -- conventions, provenance, narrow terminals ----------------------------------------------------
def _made(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    """The real entry point in a subprocess: what a user's shell runs."""
    plain = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE", "COLUMNS")}
    full = {**plain, "PYTHONPATH": str(REPO), **env}
    return subprocess.run([sys.executable, "-m", "made_cli", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=120, env=full)  # fmt: skip


def test_version_short_help_and_shell_completion(tmp_path: Path) -> None:
    from made_cli import __version__

    assert _made("--version", cwd=tmp_path).stdout.strip() == f"made {__version__}"
    short = _made("train", "-h", cwd=tmp_path)
    assert short.returncode == 0 and "Example: made train" in short.stdout
    assert "--install-completion" in _made("--help", cwd=tmp_path).stdout


def test_an_option_that_is_a_config_key_suggests_the_override(tmp_path: Path, tiny_config: Path) -> None:
    result = _made("train", str(tiny_config), "--epochs", "3", cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "train.epochs=3" in result.stderr and "(see: made train --help)" in result.stderr
    assert "train.batch_size=7" in _made("train", "--batch-size=7", cwd=tmp_path).stderr
    assert "overrides" not in _made("train", "--bogus", cwd=tmp_path).stderr
    assert "overrides" not in _made("evaluate", "--epochs", "3", cwd=tmp_path).stderr  # not for train
    assert not (tmp_path / "runs").exists()


def test_a_run_keeps_how_it_was_made_and_only_the_keys_that_apply(trained: Path) -> None:
    record = json.loads((trained / "run.json").read_text())
    (entry,) = record["invocations"]
    assert entry["command"].startswith("made train") and entry["overrides"] == []
    assert entry["torch"] == torch.__version__ and entry["python"] == sys.version.split()[0]
    assert entry["device"] == "cpu" and entry["processes"] == 1
    assert entry["git_commit"] is None or len(entry["git_commit"]) == 40
    saved = (trained / "config.yaml").read_text()
    # synthetic data and a Bernoulli MADE: no root, file, binarisation, levels or mixture keys
    for key in ("root:", "path:", "binarize:", "levels:", "components:", "iaf:"):
        assert key not in saved, key
    assert "features: 9" in saved and "num_masks: 1" in saved
    resumed = runner.invoke(app, ["train", "--resume", str(trained), "train.epochs=3"])
    assert resumed.exit_code == 0, resumed.output
    record = json.loads((trained / "run.json").read_text())
    assert [e["overrides"] for e in record["invocations"]] == [[], ["train.epochs=3"]]
    assert record["invocations"][1]["command"] == f"made train train.epochs=3 --resume {trained}"
    listing = runner.invoke(app, ["runs", "--long"])
    assert listing.exit_code == 0, listing.output
    assert "trained: " in listing.output and "resumed (1) overrides: train.epochs=3" in listing.output
    assert f"torch {torch.__version__}" in listing.output


def test_tables_never_cut_a_number_in_80_columns(trained: Path) -> None:
    nll = json.loads((trained / "metrics.jsonl").read_text().splitlines()[-1])["nll"]
    for width in ("80", "50"):
        runs = _made("runs", cwd=trained.parent.parent, COLUMNS=width)
        assert runs.returncode == 0 and f"{nll:.2f}" in runs.stdout and trained.name in runs.stdout
        assert "…" not in runs.stdout
        if width == "80":  # the model's kind, whatever else must go
            assert re.search(rf"{trained.name}\s+│\s+made\s+│", runs.stdout), runs.stdout
        verify = _made("verify-ar", cwd=trained.parent.parent, COLUMNS=width)
        assert verify.returncode == 0 and "100.0%" in verify.stdout and "…" not in verify.stdout
        assert max(len(line) for line in (runs.stdout + verify.stdout).splitlines()) <= int(width)


def test_runs_in_an_empty_folder_and_a_run_that_does_not_load(tmp_path, trained: Path, monkeypatch) -> None:
    (tmp_path / "nothing").mkdir()
    empty = runner.invoke(app, ["runs", str(tmp_path / "nothing")])
    assert empty.exit_code == 0 and "no runs under" in empty.output
    with monkeypatch.context() as m:  # a folder with no runs/ at all: the same
        m.chdir(tmp_path / "nothing")
        assert runner.invoke(app, ["runs"]).exit_code == 0
    (trained / "checkpoints" / "best.pt").write_bytes(b"junk")
    listing = runner.invoke(app, ["runs"])
    assert listing.exit_code == 0 and f"{trained.name} (!)" in listing.output
    assert "do not load" in listing.output
    long = runner.invoke(app, ["runs", "--long"])
    assert "checkpoint: does not load: corrupt or unsafe checkpoint" in long.output


def test_evaluate_starts_with_its_result_and_verify_ar_keeps_a_log(trained: Path) -> None:
    result = runner.invoke(app, ["evaluate"])
    assert result.exit_code == 0 and result.stdout.startswith("test NLL")
    assert runner.invoke(app, ["verify-ar"]).exit_code == 0
    log = (trained / "logs" / "verify-ar.log").read_text()
    assert "forbidden paths: 0" in log and "satisfy the autoregressive property" in log


def test_progress_shows_as_plain_lines_when_output_is_not_a_terminal(tmp_path, tiny_config, monkeypatch):
    from made_cli import train as training

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(training, "PLAIN_PROGRESS_SECONDS", 0.0)
    result = runner.invoke(app, ["train", str(tiny_config)])
    assert result.exit_code == 0, result.output
    assert "batch 12/12  running train loss" in result.output  # 600 rows / 50 a batch
    assert "s this epoch" in result.output and "s in all" in result.output


def _tiny_binarized_mnist(root: Path) -> None:
    """Larochelle's .amat files under ``root``, 60/30/30 random rows."""
    (root / "binarized_mnist").mkdir(parents=True)
    bits = np.random.default_rng(0).integers(0, 2, (4 * 30, 784))
    for i, split in enumerate(("train", "valid", "test")):
        rows = bits[i * 30 : (i + 2) * 30] if split == "train" else bits[i * 30 + 30 : i * 30 + 60]
        np.savetxt(root / "binarized_mnist" / f"binarized_mnist_{split}.amat", rows, fmt="%d")


def test_a_run_trained_from_an_explicit_data_root_that_moved(tmp_path: Path, monkeypatch) -> None:
    _tiny_binarized_mnist(tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MADE_DATA_DIR", raising=False)
    root = f"data.root={tmp_path / 'data'}"
    trained = runner.invoke(app, ["train", "--run-dir", "run", *_TINY_MNIST, root])
    assert trained.exit_code == 0, trained.output
    (tmp_path / "data").rename(tmp_path / "moved")
    moved = runner.invoke(app, ["evaluate", "run"])
    assert moved.exit_code == 2 and "no longer holds it" in moved.stderr
    assert not (tmp_path / "data").exists()  # nothing downloaded into the old place
    monkeypatch.setenv("MADE_DATA_DIR", str(tmp_path / "moved"))
    assert runner.invoke(app, ["evaluate", "run"]).exit_code == 0


def test_a_runs_link_and_odd_runs_are_left_alone(tmp_path, tiny_config, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "runs").symlink_to(tmp_path / "elsewhere")
    result = runner.invoke(app, ["train", str(tiny_config), "data.name=npz", "data.path=missing.npz"])
    assert result.exit_code == 2 and "data file not found" in result.stderr
    assert (tmp_path / "runs").is_symlink() and (tmp_path / "elsewhere").is_dir()
    assert runner.invoke(app, ["runs", "nowhere"]).exit_code == 2
    (tmp_path / "runs" / "x").mkdir()
    (tmp_path / "runs" / "x" / "config.yaml").write_text("name: x\n")
    (tmp_path / "runs" / "x" / "run.json").write_text('{"invocations": 5}')
    assert runner.invoke(app, ["runs", "--long"]).exit_code == 0


def test_the_data_root_is_kept_with_the_run(tmp_path: Path, monkeypatch) -> None:
    """Trained with MADE_DATA_DIR, later commands need it no more; a moved root is one line."""
    root = tmp_path / "data"
    _tiny_binarized_mnist(root)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MADE_DATA_DIR", str(root))
    trained = runner.invoke(app, ["train", "--run-dir", "run", *_TINY_MNIST])
    assert trained.exit_code == 0, trained.output
    monkeypatch.delenv("MADE_DATA_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.cache/made to fall back on
    assert runner.invoke(app, ["evaluate", "run"]).exit_code == 0
    assert runner.invoke(app, ["complete", "run", "--half", "--n", "2"]).exit_code == 0
    root.rename(tmp_path / "moved")
    moved = runner.invoke(app, ["evaluate", "run"])
    assert moved.exit_code == 2 and moved.stderr.count("\n") == 1
    assert str(root) in moved.stderr and "~/.cache/made" in moved.stderr
    monkeypatch.setenv("MADE_DATA_DIR", str(tmp_path / "moved"))  # the variable still wins
    assert runner.invoke(app, ["evaluate", "run"]).exit_code == 0


_TINY_MNIST = [str(REPO / "configs" / "mnist.yaml"), "model.hidden=[8]", "train.epochs=1",
               "train.batch_size=20"]  # fmt: skip


def test_messages_are_whole_lines_and_the_library_prints_nothing(trained: Path, tiny_config) -> None:
    """The CLI's lines are never wrapped at the terminal's width; train() called from Python only logs."""
    done = _made("complete", "--n", "2", "--steps", "0", cwd=trained.parent.parent, COLUMNS="60")
    assert done.returncode == 0, done.stderr
    long = [line for line in done.stdout.splitlines() if line.startswith("approximate completion")]
    assert long and len(long[0]) > 60 and long[0].endswith("Markov chains that follow the model)")
    code = ("import sys; from made_cli.config import load_config; from made_cli.train import train; "
            "train(load_config(sys.argv[1]), sys.argv[2])")  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    args = [sys.executable, "-c", code, str(tiny_config), str(trained.parent / "quiet")]
    quiet = subprocess.run(args, capture_output=True, text=True, timeout=120, env=env)
    assert quiet.returncode == 0 and quiet.stdout == "", quiet.stderr
    assert (trained.parent / "quiet" / "checkpoints" / "best.pt").is_file()
