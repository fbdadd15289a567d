"""What a config builds (models.py): the model kinds, heads, labels and the mixture's estimators."""

from __future__ import annotations

import math

import pytest
import torch

from made_cli.condition import Condition
from made_cli.config import load_config
from made_cli.heads import Bernoulli, Categorical, Gaussian, MixtureOfGaussians
from made_cli.kinds import build_model
from made_cli.kinds.iaf_vae.vae import IAFVAE
from made_cli.models import MADEModel

from .conftest import all_binary


@pytest.mark.parametrize(
    ("overrides", "head", "params"),
    [([], Bernoulli, 1), (["data.name=npz", "data.path=x.npz", "data.values=levels", "data.levels=5",
                           "model.head=categorical"], Categorical, 5),
     (["data.name=npz", "data.path=x.npz", "data.values=real", "model.head=gaussian"], Gaussian, 2),
     (["data.name=npz", "data.path=x.npz", "data.values=real", "model.head=mog", "model.components=3"],
      MixtureOfGaussians, 9)],
)  # fmt: skip
def test_build_model_gives_the_configs_head_and_network(overrides, head, params) -> None:
    model = build_model(load_config(None, ["model.hidden=[12, 10]", *overrides]), features=6)
    assert isinstance(model, MADEModel) and isinstance(model.head, head)
    assert model.net.params_per_dim == params and model.net.hidden == [12, 10] and model.features == 6
    assert model.log_prob(torch.zeros(3, 6)).shape == (3,)


def test_build_model_gives_a_vae_for_its_kind() -> None:
    model = build_model(load_config(None, ["model.kind=iaf_vae", "model.hidden=[16]", "iaf.latent=4"]), 10)
    assert isinstance(model, IAFVAE) and model.features == 10 and len(model.flows) == 2
    assert model.estimator.startswith("-ELBO")


def test_estimators_name_what_is_computed() -> None:
    one = build_model(load_config(None, ["model.hidden=[8]"]), 5)
    ensemble = ["model.hidden=[8]", "model.num_masks=4", "model.ordering=random"]
    many = build_model(load_config(None, ensemble), 5)
    labelled = build_model(load_config(None, ["data.name=synthetic", "model.condition_on=label"]), 5, 3)
    assert one.estimator == "exact, single mask" and many.estimator == "exact, 4-mask mixture"
    assert labelled.estimator.endswith("given the label")
    assert "label summed out over 3 classes" in labelled.marginal_estimator


def test_a_class_conditional_model_with_the_label_summed_out_is_a_normalised_density_of_x() -> None:
    model = build_model(
        load_config(None, ["data.name=synthetic", "model.hidden=[10]", "model.condition_on=label"]), 5, 3
    ).double()
    x = all_binary(5).double()
    model.fit_inputs(x, Condition(torch.tensor([0] * 20 + [1] * 8 + [2] * 4)))  # p(y) from these labels
    prior = model.label_log_prior.exp()
    assert prior.tolist() == pytest.approx([21 / 35, 9 / 35, 5 / 35])  # add-one smoothed
    with torch.no_grad():
        marginal = model.marginal_log_prob(x)
        by_hand = torch.logsumexp(
            torch.stack(
                [model.log_prob(x, Condition(torch.full((32,), y))) + prior[y].log() for y in range(3)]
            ),
            0,
        )
    assert math.isclose(float(marginal.exp().sum()), 1.0, abs_tol=1e-9)
    assert torch.allclose(marginal, by_hand)


def test_labels_are_checked_where_they_enter() -> None:
    plain = build_model(load_config(None, ["model.hidden=[8]"]), 5)
    labelled = build_model(load_config(None, ["data.name=synthetic", "model.condition_on=label"]), 5, 3)
    x = torch.zeros(2, 5)
    with pytest.raises(ValueError, match="not conditioned on labels"):
        plain.log_prob(x, Condition(torch.zeros(2, dtype=torch.long)))
    with pytest.raises(ValueError, match="pass labels"):
        labelled.log_prob(x)
    with pytest.raises(ValueError, match=r"labels must be in 0\.\.2"):
        labelled.sample(2, given=Condition(3))
    with pytest.raises(ValueError, match="only a class-conditional model"):
        plain.marginal_log_prob(x)
