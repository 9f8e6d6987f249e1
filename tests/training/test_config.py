"""The training configuration: recipes and flags by flat name into five sections, every
setting declared once and documented, wrong values located."""

from __future__ import annotations

import dataclasses
import json

import pytest
import yaml

from ppi_dist.errors import ConfigError
from ppi_dist.evaluation.threshold import OBJECTIVES
from ppi_dist.models.config import SECAIConfig
from ppi_dist.training.config import (
    FIELDS,
    SECTIONS,
    SET_BY_TRAINER,
    EvaluationConfig,
    TrainConfig,
)
from ppi_dist.training.recipes import RETIRED, load_config
from tests.helpers import REPO

RECIPES = sorted((REPO / "recipes").glob("*.yaml"))
SAVED_BY_60FAB62 = REPO / "tests/fixtures/saved_60fab62/checkpoint/step_00000003"


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_every_recipe_loads(recipe):
    config = load_config(["--config", str(recipe)])
    raw = yaml.safe_load(recipe.read_text())
    flat = config.to_dict()
    for key, value in raw.items():
        assert flat[key] == value, key
    config.model.secai_config()  # the model part is valid too


def test_flags_override_the_recipe():
    config = load_config(
        [
            "--config",
            str(REPO / "recipes/synthetic_tiny.yaml"),
            "--epochs",
            "7",
            "--lora_target_modules",
            "query",
            "key",
            "value",
        ]
    )
    assert config.optimization.epochs == 7
    assert config.model.secai.lora_target_modules == ["query", "key", "value"]
    assert config.model.encoder_shape == "tiny"  # untouched recipe values stay


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "epochs: 2\nlearning_rat_head: 1.0e-3\n",
            "recipe.yaml:2: unknown key 'learning_rat_head'",
        ),
        ("epochs: 2\n\nlora_r: eight\n", "recipe.yaml:3: lora_r should be int, got 'eight'"),
        ("best_metric: f2\n", "recipe.yaml:1: best_metric must be one of"),
        ("epochs: [1\n", "recipe.yaml:2: invalid YAML"),
        ("- epochs\n", "recipe.yaml:1: a recipe is a mapping"),
        ("freeze_encoder: 1\n", "recipe.yaml:1: freeze_encoder should be bool"),
    ],
)
def test_bad_recipe_names_file_and_line(tmp_path, text, message):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(text)
    with pytest.raises(ConfigError) as error:
        load_config(["--config", str(recipe)])
    assert message in str(error.value)


def test_yaml_exponent_without_dot_is_a_number(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("learning_rate_head: 1e-3\n")  # YAML 1.1 reads this as a string
    assert load_config(["--config", str(recipe)]).optimization.learning_rate_head == 1e-3


def test_a_configuration_saved_by_60fab62_loads_as_a_recipe_unchanged(tmp_path):
    """The flat configuration a checkpoint of the earlier, flat trainer holds is a valid
    recipe today, and reads back as the same mapping; settings added since take their
    defaults."""
    saved = json.loads((SAVED_BY_60FAB62 / "trainer_state.json").read_text())["config"]
    recipe = tmp_path / "saved.yaml"
    recipe.write_text(yaml.safe_dump(saved))
    loaded = load_config(["--config", str(recipe)]).to_dict()
    retired = saved.keys() & RETIRED.keys()
    assert {name: loaded[name] for name in saved if name not in retired} == {
        name: value for name, value in saved.items() if name not in retired
    }
    added, defaults = loaded.keys() - saved.keys(), TrainConfig().to_dict()
    assert {name: loaded[name] for name in added} == {name: defaults[name] for name in added}
    assert {"window_overlap", "train_windows", "scoring_windows"} <= added


def test_a_retired_setting_still_loads_with_one_line(tmp_path, caplog):
    """A recipe key or flag naming a setting that changed nothing loads, saying it is ignored."""
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("epochs: 2\neval_max_tokens: 4096\n")
    flags = ["--eval_max_tokens", "100", "--lora_r", "4", "--eval_max_tokens=7"]
    config = load_config(["--config", str(recipe), *flags])
    assert config.optimization.epochs == 2 and config.model.secai.lora_r == 4
    assert "eval_max_tokens" not in config.to_dict()
    said = [r.getMessage() for r in caplog.records if "eval_max_tokens" in r.getMessage()]
    assert sorted(line.split(": ")[0] for line in said) == [
        "--eval_max_tokens",
        "--eval_max_tokens",
        f"{recipe}:2",
    ]
    assert all("eval_max_tokens is no longer a setting" in line for line in said)


def test_sections_hold_the_settings_and_round_trip_by_flat_name():
    config = TrainConfig.from_dict(
        {"lora_r": 4, "max_tokens": 8192, "threshold_objective": "accuracy"}
    )
    assert config.model.secai.lora_r == 4 and config.data.max_tokens == 8192
    assert config.evaluation.threshold_objective == "accuracy"
    assert config.model.secai.threshold_objective is None  # the model's: set at the end of training
    assert TrainConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match="unknown setting 'lora_rank'"):
        TrainConfig.from_dict({"lora_rank": 4})


def test_the_models_settings_are_declared_once_and_every_setting_documented():
    model_fields = {f.name for f in dataclasses.fields(SECAIConfig)} - SET_BY_TRAINER
    for name, section in SECTIONS.items():
        own = {f.name for f in dataclasses.fields(section)}
        assert not own & model_fields, f"{name} redeclares {sorted(own & model_fields)}"
    assert model_fields <= set(FIELDS)
    assert all(place.doc for place in FIELDS.values()), [n for n, p in FIELDS.items() if not p.doc]


def test_help_lists_every_setting_with_its_docstring(capsys):
    with pytest.raises(SystemExit):
        load_config(["--help"])
    shown = " ".join(capsys.readouterr().out.split())
    for name in ("--lora_r", "--max_tokens", "--threshold_objective", "--resume_override"):
        assert name in shown
    assert " ".join(FIELDS["shuffle_buffer"].doc.split()[:6]) in shown


def test_a_random_weight_shape_replaces_the_encoder_name():
    config = load_config(["--encoder_shape", "tiny", "--tiny_hidden", "48", "--tiny_heads", "4"])
    secai = config.model.secai_config()
    assert secai.encoder is None and secai.encoder_config["hidden_size"] == 48
    assert config.model.secai.encoder == "facebook/esm2_t33_650M_UR50D"  # the section untouched
    secai.decision_threshold = 0.3
    assert config.model.secai.decision_threshold == 0.5
    assert (
        load_config(["--encoder_shape", "650M"])
        .model.secai_config()
        .encoder_config["num_hidden_layers"]
        == 33
    )
    with pytest.raises(ConfigError, match="encoder_shape must be one of"):
        load_config(["--encoder_shape", "huge"])
    # A shape's name given as --encoder says which flag builds random weights of it.
    with pytest.raises(ConfigError, match=r"random weights of a shape are --encoder_shape 8M$"):
        load_config(["--encoder", "8M"])


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--train_file", "t.tsv"], "train_file needs a valid_file"),
        (["--train_file", "t.tsv", "--valid_file", "v.tsv", "--valid_fraction", "0.1"], "not both"),
        (["--valid_fraction", "0.1"], "the synthetic task has its own"),
        (["--train_file", "t.tsv", "--valid_fraction", "1.0"], "strictly between 0 and 1"),
        (["--train_file", "t.tsv", "--valid_fraction", "0.1", "--split_identity", "0"], "split_"),
    ],
)
def test_validation_comes_from_a_file_or_a_fraction_of_train(flags, message):
    with pytest.raises(ConfigError, match=message):
        load_config(flags)
    assert load_config(["--train_file", "t.tsv", "--valid_fraction", "0.1"]).data.valid_fraction


def test_threshold_objective_choices_are_the_metrics_objectives():
    for objective in OBJECTIVES:
        assert EvaluationConfig(threshold_objective=objective).threshold_objective == objective
    with pytest.raises(ValueError, match="threshold_objective must be one of"):
        EvaluationConfig(threshold_objective="f1")


def test_unknown_flag_is_named_and_not_blamed_on_the_recipe(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("epochs: 2\nlora_r: 0\n")
    with pytest.raises(ConfigError, match="unknown flag '--no_such_flag'") as error:
        load_config(["--config", str(recipe), "--no_such_flag", "3"])
    assert "recipe.yaml" not in str(error.value)
    with pytest.raises(ConfigError, match="unknown flag '--no_such_flag'"):
        load_config(["--no_such_flag", "3"])
    # A bad value in the recipe names its line; the same value given as a flag does not.
    with pytest.raises(ConfigError, match=r"recipe\.yaml:2: lora_r must be at least 1"):
        load_config(["--config", str(recipe)])
    recipe.write_text("epochs: 2\n")
    with pytest.raises(ConfigError, match=r"^head_dropout must lie in") as error:
        load_config(["--config", str(recipe), "--head_dropout", "1.5"])


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--lora_r", "0"], "lora_r must be at least 1"),
        (["--head_dropout", "1.5"], "head_dropout must lie in [0, 1)"),
        (["--max_tokens", "100"], "max_tokens=100 cannot hold one pair"),
        (["--learning_rate_head=-1e-3"], "learning_rate_head must be a positive number"),
        (["--learning_rate_lora", "0"], "learning_rate_lora must be a positive number"),
        (["--max_steps", "-1"], "max_steps must be at least 1"),
        (["--keep_checkpoints", "0"], "keep_checkpoints must be at least 1"),
    ],
)
def test_bad_values_are_config_errors(flags, message):
    with pytest.raises(ConfigError) as error:
        load_config(flags)
    assert message in str(error.value)


def test_none_on_the_command_line_empties_a_setting_that_may_be_none(tmp_path):
    """`--first_pass_width none` trains without a first pass (argparse alone would refuse
    the word as an integer); over a recipe's value too. A setting that cannot be None keeps
    refusing it."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text("first_pass_width: 128\n")
    assert load_config(["--encoder_shape", "tiny"]).model.secai.first_pass_width == 256
    for flags in (["--first_pass_width", "none"], ["--first_pass_width=null"]):
        config = load_config([*flags, "--config", str(recipe), "--encoder_shape", "tiny"])
        assert config.model.secai.first_pass_width is None
    assert load_config(["--config", str(recipe)]).model.secai.first_pass_width == 128
    with pytest.raises(SystemExit):
        load_config(["--head_hidden", "none"])
