"""Learning: NLL approaches the known entropy; real binarized MNIST beats the baseline."""

from pathlib import Path

from made_cli.config import load_config
from made_cli.data import DataConfig, load_dataset, synthetic_distribution, synthetic_entropy
from made_cli.runs import load_run
from made_cli.train import independent_baseline_nll, train

SYNTHETIC_10 = [
    "data.name=synthetic",
    "data.features=10",
    "data.size=20000",
    "model.hidden=[64]",
    "train.epochs=15",
    "train.lr=3e-3",
    "train.patience=3",
]


def test_trained_nll_approaches_the_entropy_and_not_below(tmp_path: Path) -> None:
    result = train(load_config(None, SYNTHETIC_10), tmp_path / "run")
    entropy = synthetic_entropy(10)
    # 4000 test rows: the standard error of the mean NLL is about 0.03 nats.
    assert result.test_nll > entropy - 0.1
    assert result.test_nll < entropy + 0.1


def test_short_real_training_on_binarized_mnist_beats_the_baseline(data_root: Path, tmp_path):
    cfg = load_config(None, [f"data.root={data_root}", "train.epochs=1", "model.hidden=[100]"])
    result = train(cfg, tmp_path / "run")
    ds = load_dataset(DataConfig(root=str(data_root)))
    baseline = independent_baseline_nll(ds.train, ds.test)
    assert baseline > 200
    assert result.test_nll < baseline - 60  # one epoch of MADE is far below 206 nats


def test_label_conditional_nll_approaches_the_conditional_entropy(tmp_path: Path) -> None:
    # The synthetic rows carry the mixture component that drew them as their label, so
    # p(x | label) is a product of Bernoullis with a known entropy H(X | C), below H(X).
    cfg = load_config(None, [*SYNTHETIC_10, "model.condition_on=label"])
    result = train(cfg, tmp_path / "run")
    weights, probs = synthetic_distribution(10)
    per_component = -(probs * probs.log() + (1 - probs) * (1 - probs).log()).sum(1)
    conditional_entropy = float((weights * per_component).sum())
    assert conditional_entropy < synthetic_entropy(10) - 0.5
    assert result.estimator == "exact, single mask, given the label"
    assert conditional_entropy - 0.1 < result.test_nll < conditional_entropy + 0.1
    # with the label summed out under its training frequencies: a model of x alone, near H(X)
    run = load_run(result.run_dir)
    data = load_dataset(run.config.data)
    marginal = run.model.evaluate(data.test, data.split_condition("test"), 1000)["marginal_nll_nats"]
    assert synthetic_entropy(10) - 0.1 < marginal < synthetic_entropy(10) + 0.1
