"""Typed configs: YAML layers, --set overrides, one-line errors naming the key, stable hashes."""

import pytest

from hardneg_bench.config import ConfigError, RunConfig, config_key, deep_merge, from_dict, load_yaml, parse_override, to_dict


def test_round_trip_through_plain_data():
    cfg = from_dict(RunConfig, {"seed": 3, "pretrain": {"epochs": 7, "augment": {"crop_scale": [0.2, 1]}}, "transfer": ["cifar10"]})
    assert cfg.seed == 3 and cfg.pretrain.epochs == 7
    assert cfg.pretrain.augment.crop_scale == (0.2, 1.0) and isinstance(cfg.pretrain.augment.crop_scale[1], float)
    assert cfg.transfer == ("cifar10",)
    assert from_dict(RunConfig, to_dict(cfg)) == cfg


@pytest.mark.parametrize(
    "data,fragment",
    [
        ({"pretrain": {"epoch": 3}}, "unknown config key 'pretrain.epoch' (did you mean 'epochs'?)"),
        ({"nonsense": 1}, "unknown config key 'nonsense'"),
        ({"pretrain": {"epochs": "ten"}}, "config key 'pretrain.epochs' must be an integer"),
        ({"pretrain": {"epochs": 2.5}}, "config key 'pretrain.epochs' must be an integer"),
        ({"pretrain": {"epochs": True}}, "config key 'pretrain.epochs' must be an integer"),
        ({"pretrain": {"epochs": 0}}, "config key 'pretrain.epochs' must be at least 1"),
        ({"pretrain": {"optimizer": {"name": "rmsprop"}}}, "config key 'pretrain.optimizer.name' must be sgd, adam or lars"),
        ({"pretrain": {"optimizer": {"lr": -1}}}, "config key 'pretrain.optimizer.lr' must be positive"),
        ({"pretrain": {"augment": {"crop_scale": [0.5]}}}, "config key 'pretrain.augment.crop_scale' must be a list of 2 values"),
        ({"probe": {"augment": {"flip_p": 2}}}, "config key 'probe.augment.flip_p' must be a probability"),
        ({"probe": {"protocol": "slow"}}, "config key 'probe.protocol' must be fast or paper"),
        ({"pretrain": 5}, "config key 'pretrain' must be a mapping"),
        ({"pretrain": {"schedule": {"milestones": [80, 60]}}}, "config key 'pretrain.schedule.milestones' must be increasing"),
    ],
)
def test_bad_values_name_the_key(data, fragment):
    with pytest.raises(ConfigError) as err:
        from_dict(RunConfig, data)
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)


def test_parse_override_reads_yaml_values():
    assert parse_override("pretrain.optimizer.lr=0.1") == {"pretrain": {"optimizer": {"lr": 0.1}}}
    assert parse_override("transfer=[cifar10, stl10]") == {"transfer": ["cifar10", "stl10"]}
    assert parse_override("probe.augment=null") == {"probe": {"augment": None}}
    with pytest.raises(ConfigError, match="key=value"):
        parse_override("pretrain.epochs")


@pytest.mark.parametrize("text, value", [("1e-4", 1e-4), ("-3E2", -300.0), ("1.0e-4", 1e-4), (".5", 0.5), ("7", 7), ("1e4x", "1e4x")])
def test_exponent_numbers_without_a_dot_are_numbers(tmp_path, text, value):
    """PyYAML (YAML 1.1) reads 1e-4 as a string; configs and --set read it as the number."""
    assert parse_override(f"pretrain.optimizer.weight_decay={text}") == {"pretrain": {"optimizer": {"weight_decay": value}}}
    path = tmp_path / "c.yaml"
    path.write_text(f"pretrain:\n  optimizer:\n    weight_decay: {text}\n")
    assert load_yaml(path)["pretrain"]["optimizer"]["weight_decay"] == value


def test_deep_merge_merges_nested_and_replaces_leaves():
    base = {"pretrain": {"epochs": 5, "optimizer": {"lr": 1, "name": "sgd"}}, "seed": 0}
    merged = deep_merge(base, {"pretrain": {"optimizer": {"lr": 2}}, "seed": 1})
    assert merged == {"pretrain": {"epochs": 5, "optimizer": {"lr": 2, "name": "sgd"}}, "seed": 1}
    assert base["pretrain"]["optimizer"]["lr"] == 1


def test_config_key_changes_with_any_value_and_not_with_order():
    a = to_dict(RunConfig())
    b = to_dict(RunConfig())
    b["pretrain"]["optimizer"]["lr"] = 0.002
    assert config_key(a) != config_key(b)
    assert config_key(dict(reversed(list(a.items())))) == config_key(a)


def test_load_yaml_errors_are_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("pretrain:\n  epochs: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        load_yaml(bad)
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_yaml(listing)
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_yaml(tmp_path / "missing.yaml")


def test_method_recipes_extend_and_name_their_sources():
    from hardneg_bench.recipes import resolve_config

    hcl = resolve_config("hcl", "cifar10")
    simclr = resolve_config("simclr", "cifar10")
    assert (hcl.method_params.beta, hcl.method_params.tau_plus) == (1.0, 0.1)
    assert hcl.pretrain == simclr.pretrain and hcl.model == simclr.model  # inherited from simclr.yaml
    shapes = resolve_config("dcl", "shapes")
    assert shapes.model.backbone == "tiny" and shapes.method_params.tau_plus == 0.1  # dataset layer over the method's
    assert resolve_config("hcl", "shapes", overrides=["method_params.beta=2"]).method_params.beta == 2.0
    with pytest.raises(ConfigError, match="config key 'method_params.tau_plus' must be in"):
        resolve_config("dcl", "shapes", overrides=["method_params.tau_plus=1"])
