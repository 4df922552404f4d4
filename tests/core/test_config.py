"""TOML configs into dataclasses: unknown keys, types, overrides, counts and sizes."""

from dataclasses import dataclass, field

import pytest

from curate.core.config import deep_merge, from_dict, load_toml, parse_bytes, parse_count, parse_set
from curate.core.errors import ConfigError


@dataclass
class Inner:
    n_layer: int = 2
    lr: float = 1e-3


@dataclass
class Outer:
    name: str = "x"
    model: Inner = field(default_factory=Inner)
    tags: list[str] = field(default_factory=list)
    limit: int | None = None


def test_from_dict_builds_nested_and_coerces_ints_to_floats():
    cfg = from_dict(Outer, {"name": "run", "model": {"n_layer": 4, "lr": 1}, "tags": ["a"], "limit": 3})
    assert cfg == Outer("run", Inner(4, 1.0), ["a"], 3)
    assert isinstance(cfg.model.lr, float)


def test_unknown_key_names_known_ones_and_suggests():
    with pytest.raises(
        ConfigError,
        match=r"config\.model: unknown key 'n_layers' \(did you mean 'n_layer'\?\); known keys: lr, n_layer",
    ):
        from_dict(Outer, {"model": {"n_layers": 4}})


@pytest.mark.parametrize(
    "data,match",
    [
        ({"model": {"n_layer": "four"}}, r"config\.model\.n_layer: expected int"),
        ({"model": {"n_layer": True}}, "expected int"),
        ({"tags": "a"}, "expected a list"),
        ({"model": 3}, "expected a table"),
    ],
)
def test_wrong_types_are_config_errors(data, match):
    with pytest.raises(ConfigError, match=match):
        from_dict(Outer, data)


def test_load_toml_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_toml(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("a = [1,\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_toml(bad)
    good = tmp_path / "good.toml"
    good.write_text("[model]\nn_layer = 3\n")
    assert load_toml(good) == {"model": {"n_layer": 3}}


def test_parse_set_and_merge():
    over = parse_set(["model.n_layer=4", "name=hello", "model.lr=3e-4", "tags=['a','b']"])
    assert over == {"model": {"n_layer": 4, "lr": 3e-4}, "name": "hello", "tags": ["a", "b"]}
    merged = deep_merge({"model": {"n_layer": 2, "lr": 1.0}, "name": "x"}, over)
    assert merged["model"] == {"n_layer": 4, "lr": 3e-4} and merged["name"] == "hello"
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_set(["oops"])


@pytest.mark.parametrize(
    "text,value",
    [("2M", 2_000_000), ("500k", 500_000), ("1.5B", 1_500_000_000), ("1e6", 1_000_000), (42, 42), ("3_000", 3000)],
)
def test_parse_count(text, value):
    assert parse_count(text) == value


def test_parse_count_and_bytes_errors():
    with pytest.raises(ConfigError):
        parse_count("lots")
    assert parse_bytes("64MB") == 64_000_000 and parse_bytes("1GiB") == 1024**3 and parse_bytes("512k") == 512 * 1024
    with pytest.raises(ConfigError, match="unknown size unit"):
        parse_bytes("3 parsecs")


@pytest.mark.parametrize("text", ["inf", "-5k", "nan", "1e400", -3])
def test_parse_count_rejects_non_finite_and_negative(text):
    with pytest.raises(ConfigError, match="non-negative count"):
        parse_count(text)


@pytest.mark.parametrize("text", ["-5MB", "infGB", -1])
def test_parse_bytes_rejects_negative_and_non_finite(text):
    with pytest.raises(ConfigError):
        parse_bytes(text)


def test_parse_set_value_and_table_clash():
    with pytest.raises(ConfigError, match="was set to a value, not a table"):
        parse_set(["extract=1", "extract.mode=full"])
    with pytest.raises(ConfigError, match="is a table"):
        parse_set(["extract.mode=full", "extract=1"])


def test_partial_nested_table_keeps_the_fields_own_defaults():
    @dataclass
    class Optim:
        lr: float = 1e-3
        warmup_steps: int = 10

    @dataclass
    class Stage:
        optim: Optim = field(default_factory=lambda: Optim(lr=1e-5, warmup_steps=0))

    assert from_dict(Stage, {"optim": {"lr": 0.5}}).optim == Optim(lr=0.5, warmup_steps=0)
    assert from_dict(Stage, {}).optim == Optim(lr=1e-5, warmup_steps=0)
