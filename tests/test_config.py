from dataclasses import fields
from importlib import resources

import pytest
import yaml

from llmclf.config import TrainArgs, field_docs, flag, recipe_names, resolve_train_args

from helpers import user_error

SHIPPED = sorted(p.name[:-5] for p in resources.files("llmclf.configs").iterdir() if p.name.endswith(".yaml"))


def write_yaml(tmp_path, values, name="run.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(values) if isinstance(values, dict) else values)
    return path


def test_the_shipped_recipes_are_found():
    assert SHIPPED == recipe_names()
    assert {"default", "lora", "seed"} <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_recipe_loads(name):
    args = resolve_train_args(recipe=name)
    assert isinstance(args, TrainArgs)
    text = (resources.files("llmclf.configs") / f"{name}.yaml").read_text()
    for key, value in yaml.safe_load(text).items():  # every key in the file reaches the args, typed
        got = getattr(args, key)
        assert got == value and (value is None or type(got) is type(value) or isinstance(got, float))


def test_seed_recipe_is_the_card():
    args = resolve_train_args(recipe="seed")
    assert args.epochs == 10.0 and isinstance(args.epochs, float)
    assert args.batch_size == 8
    assert args.learning_rate == 3e-5
    assert args.weight_decay == 0.01
    assert args.warmup_ratio == 0.4
    assert args.lr_scheduler_type == "linear"
    assert args.max_length == 512
    assert args.padding == "max_length"
    assert args.validation_fraction == 0.2
    assert args.seed == 42
    assert args.best_metric is None
    assert args.lora is False


def test_default_recipe_matches_the_code_defaults():
    assert resolve_train_args(recipe="default") == TrainArgs()
    assert resolve_train_args() == TrainArgs()


def test_lora_recipe():
    args = resolve_train_args(recipe="lora")
    assert args.lora is True and args.lora_r == 16 and args.learning_rate == 3e-4


def test_precedence_defaults_recipe_overrides():
    defaults = TrainArgs()
    args = resolve_train_args(recipe="seed", overrides={"epochs": 2, "seed": None, "data": "d.csv"})
    assert args.epochs == 2.0  # override beats recipe
    assert args.seed == 42  # None means "not given": the recipe's value stays
    assert args.learning_rate == 3e-5  # recipe beats default
    assert args.lora_r == defaults.lora_r and args.output == defaults.output  # defaults fill the rest
    assert args.data == "d.csv"


def test_precedence_defaults_config_overrides(tmp_path):
    path = write_yaml(tmp_path, {"epochs": 3, "learning_rate": 1.0e-4, "padding": "max_length"})
    args = resolve_train_args(config=path, overrides={"learning_rate": 2e-4})
    assert args.epochs == 3.0 and isinstance(args.epochs, float)  # YAML beats default
    assert args.learning_rate == 2e-4  # override beats YAML
    assert args.padding == "max_length"
    assert args.batch_size == TrainArgs().batch_size


def test_config_file_beats_defaults_and_the_default_recipe(tmp_path):
    """A --config file replaces the recipe layer, so every key it sets wins over the recipe's value."""
    default_recipe = resolve_train_args(recipe="default")
    path = write_yaml(tmp_path, {"epochs": 4, "warmup_ratio": 0.3})
    args = resolve_train_args(config=path)
    assert (args.epochs, args.warmup_ratio) == (4.0, 0.3) != (default_recipe.epochs, default_recipe.warmup_ratio)


def test_empty_config_file_gives_defaults(tmp_path):
    assert resolve_train_args(config=write_yaml(tmp_path, "")) == TrainArgs()


def test_yaml_exponent_without_dot_is_a_float(tmp_path):
    """PyYAML reads `3e-5` as a string; it is what people write for a learning rate."""
    args = resolve_train_args(config=write_yaml(tmp_path, "learning_rate: 3e-5\nweight_decay: 1E-2\n"))
    assert args.learning_rate == 3e-5 and args.weight_decay == 0.01


def test_label_names_from_a_string_or_a_list(tmp_path):
    assert resolve_train_args(overrides={"label_names": "neg, pos"}).label_names == ["neg", "pos"]
    assert resolve_train_args(config=write_yaml(tmp_path, {"label_names": ["neg", "pos"]})).label_names == ["neg", "pos"]


def test_unknown_yaml_key_is_named(tmp_path):
    path = write_yaml(tmp_path, {"epochs": 1, "learning_rte": 1e-4})
    message = user_error("unknown setting", resolve_train_args, config=path)
    assert "learning_rte" in message and "learning_rate" in message and str(path) in message


def test_unknown_override_is_named():
    user_error("unknown setting.*epoch;", resolve_train_args, overrides={"epoch": 3})


@pytest.mark.parametrize("values, match", [
    ({"epochs": "ten"}, "--epochs must be of type float"),
    ({"batch_size": 8.5}, "--batch-size must be of type int"),
    ({"batch_size": "8"}, "--batch-size must be of type int"),
    ({"max_length": True}, "--max-length must be of type int"),
    ({"lora": "yes"}, "--lora must be of type bool"),
    ({"padding": 5}, "--padding must be of type str"),
    ({"model": None}, "--model needs a value"),
    ({"label_names": {"a": 1}}, "--label-names must be a list"),
    ({"padding": "left"}, "--padding must be one of longest, max_length"),
    ({"best_metric": "auc"}, "--best-metric must be one of"),
    ({"report_to": "wandb"}, "--report-to must be one of"),
    ({"warmup_ratio": 1.0}, r"--warmup-ratio must be in \[0, 1\)"),
    ({"validation_fraction": 0.0}, r"--validation-fraction must be in \(0, 1\)"),
    ({"epochs": 0}, "--epochs must be above 0"),
    ({"learning_rate": -1e-5}, "--learning-rate must be above 0"),
    ({"early_stopping_patience": 2}, "needs --best-metric"),
])
def test_wrong_values_in_yaml(tmp_path, values, match):
    user_error(match, resolve_train_args, config=write_yaml(tmp_path, values))


@pytest.mark.parametrize("name", ["max_length", "batch_size", "eval_batch_size", "gradient_accumulation_steps",
                                  "lora_r", "max_train_samples"])
@pytest.mark.parametrize("value", [0, -1])
def test_sizes_must_be_positive(name, value):
    user_error(f"{flag(name)} must be an integer of at least 1, got {value}", resolve_train_args,
               overrides={name: value})


def test_config_that_is_not_a_mapping_or_not_yaml(tmp_path):
    user_error("expected a mapping", resolve_train_args, config=write_yaml(tmp_path, "- 1\n- 2\n"))
    user_error("not valid YAML", resolve_train_args, config=write_yaml(tmp_path, "epochs: [1,\n"))
    user_error("file not found", resolve_train_args, config=tmp_path / "nope.yaml")


def test_recipe_and_config_together(tmp_path):
    user_error("--recipe and --config both given", resolve_train_args, recipe="seed",
               config=write_yaml(tmp_path, {"epochs": 1}))


def test_unknown_recipe_lists_the_known_ones():
    message = user_error("--recipe sed: no such recipe", resolve_train_args, recipe="sed")
    assert all(name in message for name in SHIPPED)


def test_field_docs_cover_every_field():
    docs = field_docs()
    assert set(docs) == {f.name for f in fields(TrainArgs)}
    assert all(isinstance(d, str) and d.strip() for d in docs.values())


def test_cli_has_one_flag_per_field_with_its_doc():
    from llmclf.cli import build_parser

    train = build_parser()._subparsers._group_actions[0].choices["train"]
    by_dest = {a.dest: a for a in train._actions}
    for f in fields(TrainArgs):
        assert flag(f.name) in by_dest[f.name].option_strings
        assert by_dest[f.name].help == field_docs()[f.name]


def test_to_dict_round_trips_through_yaml(tmp_path):
    args = resolve_train_args(recipe="seed", overrides={"label_names": "neg,pos", "data": "d.csv"})
    path = write_yaml(tmp_path, yaml.safe_dump(args.to_dict()))
    assert resolve_train_args(config=path) == args


def test_cli_flags_override_a_recipe_both_ways():
    from llmclf.cli import build_parser

    ns = build_parser().parse_args(["train", "--recipe", "lora", "--no-lora", "--learning-rate", "1e-4"])
    overrides = {f.name: getattr(ns, f.name) for f in fields(TrainArgs)}
    args = resolve_train_args(recipe=ns.recipe, overrides=overrides)
    assert args.lora is False and args.learning_rate == 1e-4 and args.epochs == 2.0  # the rest from the recipe
