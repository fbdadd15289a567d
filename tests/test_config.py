"""Config: YAML into typed dataclasses, dotted overrides, one clear error for each mistake."""

from pathlib import Path

import pytest

from made_cli.config import config_from_dict, config_to_dict, config_to_yaml, load_config
from made_cli.errors import UsageError

REPO = Path(__file__).resolve().parents[1]


def test_shipped_configs_load() -> None:
    shipped = sorted((REPO / "configs").rglob("*.yaml"))
    assert len(shipped) >= 11
    for path in shipped:
        load_config(path)
    cfg = load_config(REPO / "configs" / "mnist.yaml")
    assert cfg.model.hidden == (500,) and cfg.model.direct and cfg.model.num_masks == 1
    assert cfg.train.batch_size == 100 and cfg.data.name == "binarized_mnist"


def test_overrides_are_typed_by_the_schema() -> None:
    cfg = load_config(
        REPO / "configs" / "mnist.yaml",
        ["model.hidden=[500,500]", "train.lr=3e-4", "model.direct=false", "seed=3"],
    )
    assert cfg.model.hidden == (500, 500)
    assert cfg.train.lr == pytest.approx(3e-4) and isinstance(cfg.train.lr, float)
    assert cfg.model.direct is False and cfg.seed == 3


def test_round_trip_through_yaml_and_dict(tmp_path: Path) -> None:
    cfg = load_config(None, ["model.hidden=[7,5]", "model.ordering=random"])
    path = tmp_path / "c.yaml"
    path.write_text(config_to_yaml(cfg))
    assert load_config(path) == cfg
    assert config_from_dict(config_to_dict(cfg)) == cfg


def test_a_run_keeps_only_its_own_kinds_section() -> None:
    """A flow's run saves its flow section and no iaf section, a MADE's neither, and a toy set
    needs no data.values (reals are all it has)."""
    flow = load_config(None, ["data.name=toy", "model.kind=maf", "flow.layers=3", "flow.base=mog"])
    assert flow.data.values == "real" and flow.flow.layers == 3
    saved = config_to_dict(flow)
    assert "flow" in saved and "iaf" not in saved
    assert config_from_dict(saved) == flow
    shown = config_to_yaml(flow)
    assert "components" in shown and "num_masks" not in shown and "head" not in shown
    made = config_to_dict(load_config(None))
    assert "flow" not in made and "iaf" not in made


@pytest.mark.parametrize(
    ("text", "overrides", "message"),
    [
        ("model:\n  hiden: [5]\n", [], "unknown key 'model.hiden' (did you mean 'model.hidden'?)"),
        ("train:\n  epochs: ten\n", [], "train.epochs must be an integer (got 'ten')"),
        ("model:\n  ordering: sideways\n", [], "model.ordering must be one of natural, reverse, random"),
        ("model: {hidden: [5, x]}\n", [], "model.hidden must be a list of integers"),
        ("model:\n  hidden: [5\n", [], "c.yaml:3:1: malformed YAML"),
        ("- 1\n- 2\n", [], "must be a mapping"),
        ("", ["train.lr"], "override 'train.lr' must look like key.subkey=value"),
        ("", ["train.lrr=0.1"], "unknown key 'train.lrr' (did you mean 'train.lr'?)"),
        ("", ["train.lr=-1"], "train.lr must be a positive number"),
        ("", ["train.lr=.nan"], "train.lr must be a positive number"),
        ("", ["train.weight_decay=.inf"], "train.weight_decay must be a number >= 0"),
        ("", ["seed=99999999999999999999999"], "seed must be between 0 and 2**63 - 1"),
        ("", ["model.num_masks=4", "model.hidden_degrees=even"], "model.num_masks > 1 needs"),
        ("", ["data.name=npz"], "data.path must name the .npz file"),
        ("", ["name=a/b"], "name may use letters"),
        ("", ["model.hidden=[0]"], "model.hidden sizes must be at least 1"),
        ("", ["model.head=gaussian"], "model.head: gaussian models logit or real data"),
        ("", ["data.values=logit"], "data.values: logit is not available for binarized_mnist"),
        ("", ["data.name=mnist", "data.values=levels"], "use model.head: categorical"),
        (
            "",
            ["data.name=mnist", "data.values=levels", "data.levels=1", "model.head=categorical"],
            "data.levels must be between 2 and 256",
        ),
        ("", ["model.condition_on=label"], "binarized_mnist (Larochelle's files) has no labels"),
        ("", ["model.head=mog", "model.components=0"], "model.components must be at least 1"),
        ("", ["data.columns=[a]"], "data.columns is for data.name: table"),
        ("", ["data.name=table"], "data.path must name the table"),
        (
            "",
            ["data.name=table", "data.path=t.csv", "data.columns=[a, 3]"],
            "data.columns must be a list of strings",
        ),
        (
            "",
            ["data.name=table", "data.path=t.csv", "model.kind=iaf_vae"],
            "a table takes model.kind: made, maf or nsf",
        ),
        ("", ["data.name=npz", "data.path=x.npz", "model.head=auto"], "model.head: auto is for tables"),
        (
            "",
            ["data.name=table", "data.path=t.csv", "model.head=bernoulli"],
            "use model.head: gaussian or mog or auto",
        ),
        ("", ["data.name=table", "data.path=t.csv", "model.condition_on=label"], "needs data.label_column"),
        (
            "",
            ["data.name=table", "data.path=t.csv", "data.label_column=y"],
            "is used by model.condition_on: label",
        ),
        (
            "",
            ["data.name=table", "data.path=t.csv", "data.columns=[a, b]", "data.context_columns=[b]"],
            "column 'b' is named twice",
        ),
        (
            "",
            ["data.name=table", "data.path=t.csv", "data.max_levels=1"],
            "data.max_levels must be at least 2",
        ),
    ],
)
def test_bad_configs_give_one_clear_line(tmp_path: Path, text, overrides, message) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(UsageError) as info:
        load_config(path, overrides)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_config_file_or_a_directory(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(UsageError, match="is a directory"):
        load_config(tmp_path)


def test_a_table_needs_no_values_and_defaults_to_a_head_per_column() -> None:
    cfg = load_config(None, ["data.name=table", "data.path=t.csv", "data.columns=[a, b]"])
    assert cfg.data.values == "mixed" and cfg.model.head == "auto" and cfg.data.columns == ("a", "b")
    shown = config_to_yaml(cfg)
    assert "columns" in shown and "max_levels" in shown and "levels:" not in shown.replace("max_levels", "")
    assert (
        load_config(None, ["data.name=table", "data.path=t.csv", "model.head=gaussian"]).model.head
        == "gaussian"
    )
    flow = load_config(None, ["data.name=table", "data.path=t.csv", "model.kind=maf"])
    assert flow.model.head == "auto" and config_from_dict(config_to_dict(flow)) == flow
    assert "columns" not in config_to_yaml(load_config(None))  # keys of a table only for a table


def test_a_saved_config_with_every_kinds_sections_still_loads() -> None:
    """Runs saved before a config kept only its kind's sections carry the others' defaults."""
    import dataclasses

    from made_cli.config import saved_config
    from made_cli.kinds import sections

    saved = config_to_dict(load_config(None, ["model.hidden=[8]"]))
    for name, section in sections().items():
        saved[name] = dataclasses.asdict(section())
    cfg = saved_config(saved)
    assert cfg.model.hidden == (8,) and "flow" not in config_to_dict(cfg)
    with pytest.raises(UsageError, match=r"the iaf section is for model\.kind: iaf_vae"):
        config_from_dict(saved)  # a config a person writes is still held to its kind's sections
    flow = config_to_dict(load_config(None, ["data.name=toy", "model.kind=nsf", "spline.bins=4"]))
    assert saved_config({**flow, "iaf": {"steps": 2}}).spline.bins == 4
