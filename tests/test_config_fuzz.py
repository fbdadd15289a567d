"""Property-based: no config text or override, however wrong, escapes as anything but one line."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from made_cli.cli import app
from made_cli.config import Config, config_to_dict, load_config
from made_cli.errors import UsageError

KEYS = [
    *(f"{section}.{key}" for section, d in config_to_dict(Config()).items() if isinstance(d, dict)
      for key in d),
    "name", "seed", "model", "data", "train", "model.hiden", "train.lr.x", "", ".", "a..b",
]  # fmt: skip

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3), max_leaves=6)
yaml_values = st.one_of(
    values.map(repr),
    st.text(max_size=20),
    st.sampled_from(["[1,", "{a: ", "!!python/object:os.system", "1e-3", "- x"]),
)
overrides = st.lists(
    st.tuples(st.sampled_from(KEYS), yaml_values).map(lambda kv: f"{kv[0]}={kv[1]}") | st.text(max_size=15),
    max_size=4,
)


def _assert_config_or_one_line_usage_error(call) -> None:
    try:
        result = call()
    except UsageError as e:
        assert str(e) and "\n" not in str(e), repr(str(e))
    else:
        assert isinstance(result, Config), result


@settings(max_examples=300, deadline=None, derandomize=True)
@given(overrides)
def test_any_overrides_give_a_config_or_one_usage_error(items: list[str]) -> None:
    _assert_config_or_one_line_usage_error(lambda: load_config(None, items))


@settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(st.text(max_size=80) | values.map(lambda v: f"train:\n  epochs: {v!r}\n"))
def test_any_config_text_gives_a_config_or_one_usage_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    _assert_config_or_one_line_usage_error(lambda: load_config(path))


@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(overrides)
def test_the_cli_never_shows_a_traceback_for_bad_overrides(tmp_path: Path, items: list[str]) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("name: fuzz\n")
    result = CliRunner().invoke(app, ["train", str(config), *items, "--print-config"])
    assert result.exit_code in (0, 2), result.output
    assert "Traceback" not in result.output
    if result.exit_code == 2:
        assert result.stderr.startswith("error:") and result.stderr.count("\n") == 1, result.stderr
