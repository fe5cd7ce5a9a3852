"""Configs: YAML files, command-line overrides, type checks with actionable errors, round trips."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Literal

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from sftvrl.config import (
    ConfigError,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    flatten_config,
    format_override,
    load_config,
    load_yaml,
    parse_overrides,
    save_config,
)


class Precision(Enum):
    FP32 = "fp32"
    BF16 = "bf16"


@dataclass
class Lora:
    r: int = 16
    alpha: float = 32.0
    dropout: float = 0.05
    targets: tuple[str, ...] = ("q_proj", "v_proj")


@dataclass
class Model:
    name: str = "tiny-llama"
    lora: Lora | None = None
    dtype: Literal["float32", "bfloat16"] = "float32"
    precision: Precision = Precision.FP32
    max_length: int | None = None


@dataclass
class Train:
    lr: float = 1e-5
    max_steps: int = 100
    betas: tuple[float, float] = (0.9, 0.98)
    output_dir: Path = Path("runs")
    run_name: str = "gp_l_sft"
    tag: str | None = None

    def __post_init__(self) -> None:
        if self.max_steps < 0:
            raise ValueError("max_steps must be >= 0")


@dataclass
class Config:
    task: Literal["gp-l", "gp-vl", "virl-l", "virl-vl"] = "gp-l"
    model: Model = field(default_factory=Model)
    train: Train = field(default_factory=Train)
    seeds: list[int] = field(default_factory=lambda: [0])
    env: dict[str, Any] = field(default_factory=dict)
    notes: str = ""


@dataclass
class NeedsName:
    name: str
    size: int = 1


YAML = """\
task: gp-vl
model:
  name: Qwen/Qwen2-VL-2B-Instruct
  lora:
    r: 8
  dtype: bfloat16
train:
  lr: 1e-5            # PyYAML alone reads this as the string '1e-5'
  max_steps: 400
env:
  face: jqk
  verify_iter: 5
seeds: [1, 2, 3]
"""


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "gp_vl_sft.yaml"
    path.write_text(YAML)
    return path


def test_yaml_file_builds_nested_typed_config(config_file: Path):
    config = load_config(Config, config_file)
    assert config.task == "gp-vl"
    assert config.model.lora == Lora(r=8)
    assert config.model.lora.targets == ("q_proj", "v_proj")
    assert config.train.lr == 1e-5 and isinstance(config.train.lr, float)
    assert config.train.max_steps == 400
    assert config.train.output_dir == Path("runs")
    assert config.seeds == [1, 2, 3]
    assert config.env == {"face": "jqk", "verify_iter": 5}


def test_defaults_without_a_file():
    assert load_config(Config) == Config()


def test_overrides_are_applied_in_order(config_file: Path):
    config = load_config(
        Config,
        config_file,
        [
            "train.lr=2e-6",
            "model.lora.r=4",
            "seeds=[7]",
            "train.betas=[0.8, 0.9]",
            "model.lora.targets=[q_proj]",
            "env.face=10",
            "model.precision=bf16",
            "train.max_steps=10",
            "train.max_steps=20",
        ],
    )
    assert config.train.lr == 2e-6
    assert config.model.lora == Lora(r=4, targets=("q_proj",))
    assert config.seeds == [7]
    assert config.train.betas == (0.8, 0.9)
    assert config.env == {"face": 10, "verify_iter": 5}
    assert config.model.precision is Precision.BF16
    assert config.train.max_steps == 20


def test_optional_section_can_be_disabled_enabled_and_replaced(config_file: Path):
    assert load_config(Config, config_file, ["model.lora=null"]).model.lora is None
    # setting a key inside a disabled section enables it with its defaults
    assert load_config(Config, None, ["model.lora.r=8"]).model.lora == Lora(r=8)
    replaced = load_config(Config, config_file, ["model.lora={r: 2, alpha: 4}"])
    assert replaced.model.lora == Lora(r=2, alpha=4.0)


def test_string_fields_keep_the_raw_text():
    config = load_config(
        Config, None, ["train.run_name=001", "notes=", "train.tag=null", "model.name=a: b"]
    )
    assert config.train.run_name == "001"
    assert config.notes == ""
    assert config.train.tag is None
    assert config.model.name == "a: b"


def test_yaml_12_booleans_and_floats():
    assert load_yaml("x: yes\ny: 1e-5\nz: true\nw: .5") == {
        "x": "yes",
        "y": 1e-5,
        "z": True,
        "w": 0.5,
    }


def test_unknown_key_in_file_names_file_key_and_suggestion(tmp_path: Path):
    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  lrr: 0.1\n")
    with pytest.raises(ConfigError) as info:
        load_config(Config, path)
    message = str(info.value)
    assert str(path) in message
    assert "train.lrr" in message and "Did you mean 'train.lr'" in message
    assert "lr, max_steps, betas" in message
    assert info.value.key == "train.lrr"
    assert info.value.source == str(path)
    assert "lr" in info.value.valid


def test_key_at_the_wrong_level_suggests_the_full_path():
    with pytest.raises(ConfigError, match=r"unknown key 'lr'.*Did you mean 'train\.lr'"):
        load_config(Config, None, ["lr=1e-5"])


@pytest.mark.parametrize(
    ("override", "pattern"),
    [
        ("train.max_steps=1.5", r"train\.max_steps: expected an integer, got float 1\.5"),
        ("train.max_steps=2.0", r"write it without a '\.'"),
        ("train.lr=fast", r"train\.lr: expected a number, got str 'fast'"),
        ("model.dtype=bfloat", r"expected one of 'float32', 'bfloat16'.*Did you mean 'bfloat16'"),
        ("task=gpl", r"Did you mean 'gp-l'"),
        ("seeds=3", r"seeds: expected a list, got int 3; write \[3\]"),
        ("seeds=[1, x]", r"seeds\[1\]: expected an integer"),
        ("train.betas=[0.9]", r"train\.betas: expected a list of 2 items, got 1"),
        ("model.name.x=1", r"model\.name: is str 'tiny-llama', not a section"),
        ("model.lora.rank=4", r"Did you mean 'model\.lora\.r'"),
        ("train.max_steps=-1", r"invalid Train: max_steps must be >= 0"),
        ("model.precision=fp16", r"expected one of fp32, bf16"),
        ("model.max_length=null", None),
        ("seeds=[1, 2", r"cannot parse value '\[1, 2'"),
        ("train.lr", r"malformed override 'train\.lr'"),
    ],
)
def test_override_errors_name_the_key_and_the_fix(override: str, pattern: str | None):
    if pattern is None:
        assert load_config(Config, None, [override]).model.max_length is None
        return
    with pytest.raises(ConfigError, match=pattern) as info:
        load_config(Config, None, [override])
    assert override.split("=")[0] in str(info.value)


def test_errors_name_the_override_and_its_file(config_file: Path):
    with pytest.raises(ConfigError) as info:
        load_config(Config, config_file, ["train.max_steps=many"])
    assert "override 'train.max_steps=many'" in str(info.value)
    assert str(config_file) in str(info.value)


def test_type_errors_in_file(tmp_path: Path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  max_steps: lots\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: train\.max_steps: expected an integer"):
        load_config(Config, path)
    path.write_text("model: tiny\n")
    with pytest.raises(ConfigError, match=r"model: expected a mapping of Model fields"):
        load_config(Config, path)
    path.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match=r"top level must be a mapping"):
        load_config(Config, path)
    path.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: invalid YAML"):
        load_config(Config, path)
    path.write_text("train:\n  max_steps: yes\n")  # a string under YAML 1.2, not True
    with pytest.raises(ConfigError, match=r"expected an integer, got str 'yes'"):
        load_config(Config, path)


def test_missing_file_suggests_a_sibling(config_file: Path):
    with pytest.raises(ConfigError, match=r"config file not found.*Did you mean .*gp_vl_sft\.yaml"):
        load_config(Config, config_file.with_name("gp_vl_sf.yaml"))
    with pytest.raises(ConfigError, match=r"does not exist"):
        load_config(Config, config_file.parent / "nowhere" / "x.yaml")


def test_required_fields_must_be_given():
    with pytest.raises(ConfigError, match=r"name: required key is missing"):
        load_config(NeedsName)
    assert load_config(NeedsName, None, ["name=x"]) == NeedsName("x")


def test_empty_file_means_defaults(tmp_path: Path):
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing here\n")
    assert load_config(Config, path) == Config()


def test_round_trip_through_yaml(tmp_path: Path, config_file: Path):
    config = load_config(
        Config,
        config_file,
        ["notes=yes", "train.run_name=1e-5", "train.tag=null", "model.name=001", "env.k=[1, a]"],
    )
    path = save_config(config, tmp_path / "out" / "config.yaml")
    assert load_config(Config, path) == config
    # the file means the same to a plain YAML 1.1 reader
    plain = yaml.safe_load(path.read_text())
    assert plain["notes"] == "yes" and plain["train"]["run_name"] == "1e-5"
    assert plain["train"]["lr"] == 1e-5 and plain["model"]["lora"]["targets"] == [
        "q_proj",
        "v_proj",
    ]


def test_config_to_dict_is_plain_data():
    data = config_to_dict(Config(model=Model(lora=Lora(), precision=Precision.BF16)))
    assert data["model"]["lora"]["targets"] == ["q_proj", "v_proj"]
    assert data["train"]["output_dir"] == "runs"
    assert data["model"]["precision"] == "bf16"
    assert config_from_dict(Config, data) == Config(
        model=Model(lora=Lora(), precision=Precision.BF16)
    )
    assert flatten_config(data)["model.lora.r"] == 16
    with pytest.raises(ConfigError, match="cannot store"):
        config_to_dict({"x": object()})


def test_apply_overrides_returns_a_checked_copy():
    base = Config()
    changed = apply_overrides(base, ["train.lr=3e-4"])
    assert changed.train.lr == 3e-4 and base.train.lr == 1e-5
    with pytest.raises(TypeError, match="sequence"):
        apply_overrides(base, "train.lr=1")  # type: ignore[arg-type]


def test_parse_overrides_for_clis():
    argv = ["--config", "configs/tiny/gp_l_sft.yaml", "train.max_steps=10", "--seeds=[1,2]"]
    assert parse_overrides(argv) == (
        Path("configs/tiny/gp_l_sft.yaml"),
        ["train.max_steps=10", "seeds=[1,2]"],
    )
    assert parse_overrides(["-c", "a.yaml"]) == (Path("a.yaml"), [])
    assert parse_overrides(["--config=a.yaml", "x.y=a=b"]) == (Path("a.yaml"), ["x.y=a=b"])
    assert parse_overrides(["a.yml", "k=v"]) == (Path("a.yml"), ["k=v"])
    assert parse_overrides([]) == (None, [])
    with pytest.raises(ConfigError, match="more than one config"):
        parse_overrides(["a.yaml", "--config", "b.yaml"])
    with pytest.raises(ConfigError, match="needs a file"):
        parse_overrides(["--config"])
    with pytest.raises(ConfigError, match=r"unexpected argument 'train\.lr'.*no spaces"):
        parse_overrides(["train.lr", "=", "1"])
    with pytest.raises(ConfigError, match="unexpected argument '--verbose'"):
        parse_overrides(["--verbose"])


def test_cli_round_trip_from_parse_to_config(config_file: Path):
    path, overrides = parse_overrides(["--config", str(config_file), "train.max_steps=10"])
    assert load_config(Config, path, overrides).train.max_steps == 10


# ---- properties

_text = st.text(
    st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\ufeff"), max_size=12
)
_floats = st.floats(allow_nan=False, width=64)
_loras = st.builds(
    Lora,
    r=st.integers(0, 2**40),
    alpha=_floats,
    dropout=_floats,
    targets=st.lists(_text, max_size=3).map(tuple),
)
_configs = st.builds(
    Config,
    task=st.sampled_from(["gp-l", "gp-vl", "virl-l", "virl-vl"]),
    model=st.builds(
        Model,
        name=_text,
        lora=st.none() | _loras,
        dtype=st.sampled_from(["float32", "bfloat16"]),
        precision=st.sampled_from(Precision),
        max_length=st.none() | st.integers(-(2**62), 2**62),
    ),
    train=st.builds(
        Train,
        lr=_floats,
        max_steps=st.integers(0, 10**12),
        betas=st.tuples(_floats, _floats),
        run_name=_text,
        tag=st.none() | _text,
    ),
    seeds=st.lists(st.integers(-(2**31), 2**31), max_size=4),
    env=st.dictionaries(
        st.from_regex(r"[a-z][a-z0-9_]{0,6}", fullmatch=True),
        st.none() | st.booleans() | st.integers() | _floats | _text,
        max_size=3,
    ),
    notes=_text,
)


def _same(a: Any, b: Any) -> bool:
    """Equality where -0.0 == 0.0 and floats compare exactly otherwise."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return a == b


@settings(max_examples=60, deadline=None)
@given(_configs)
def test_any_config_is_reached_by_overrides_of_its_leaves(config: Config):
    overrides = [format_override(k, v) for k, v in flatten_config(config_to_dict(config)).items()]
    assert load_config(Config, None, overrides) == config


@settings(max_examples=40, deadline=None)
@given(_configs)
def test_any_config_round_trips_through_a_file(tmp_path_factory, config: Config):
    path = save_config(config, tmp_path_factory.mktemp("cfg") / "config.yaml")
    assert load_config(Config, path) == config
