"""Config loading: the book's defaults, overrides, and one-line errors that name file, key path and what is allowed."""

from __future__ import annotations

import pytest
from conftest import write

import regbench
from regbench.core.errors import ConfigError
from regbench.resolve import check_config, load_config


def error(source, overrides=None) -> str:
    with pytest.raises(ConfigError) as e:
        cfg = load_config(source, overrides)
        check_config(cfg)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_every_key_has_the_books_default():
    cfg = load_config({})
    assert (cfg.train.epochs, cfg.train.batch_size, cfg.train.show, cfg.train.show_params) == (
        10,
        10,
        3,
        False,
    )
    assert (cfg.optimizer.name, cfg.optimizer.lr, cfg.optimizer.beta1, cfg.optimizer.beta2) == (
        "adam",
        0.001,
        0.9,
        0.999,
    )
    assert (cfg.model.init.type, cfg.model.init.std, cfg.model.activation) == ("normal", 0.03, "relu")
    assert (cfg.data.name, cfg.data.split.train, cfg.data.split.val) == ("digits", 0.8, 0.05)
    assert (cfg.regularizer.l2_decay, cfg.regularizer.l1_decay, cfg.regularizer.mode) == (
        0.0,
        0.0,
        "decoupled",
    )
    assert cfg.model.layers == [["full", {"width": 30}], ["full", {"width": 10}]]


def test_layer_defaults_are_filled_in_the_resolved_list():
    cfg = load_config({"model": {"layers": [["dropout"], ["noise", {"std": 0.01}], ["batch_normal"], 5]}})
    assert cfg.model.layers[0] == ["dropout", {"keep_prob": 1.0, "scale": "train"}]
    # a normal noise layer's low/high do not apply, so the resolved list leaves them out
    assert cfg.model.layers[1] == ["noise", {"type": "normal", "mean": 0.0, "std": 0.01, "ratio": 1.0}]
    assert cfg.model.layers[2] == ["batch_normal", {"epsilon": 1e-10, "exp_ratio": 0.001, "rescale": True}]
    assert cfg.model.layers[3] == ["full", {"width": 5}]


def test_the_resolved_config_leaves_out_defaults_that_do_not_apply():
    cfg = load_config({"model": {"layers": [["noise", {"type": "uniform"}], 5], "init": {"type": "he_normal"}}})
    plain = cfg.to_dict()
    assert plain["model"]["init"] == {"type": "he_normal", "bias": 0.0}  # no std, mean, low, high
    assert plain["model"]["layers"][0] == ["noise", {"type": "uniform", "low": -1.0, "high": 1.0, "ratio": 1.0}]
    assert load_config(plain) == cfg  # read back, the left-out keys are their defaults again
    normal = load_config({"model": {"init": {"type": "normal", "std": 0.01}}}).to_dict()["model"]["init"]
    assert normal == {"type": "normal", "std": 0.01, "mean": 0.0, "bias": 0.0}
    kept = load_config({"model": {"init": {"type": "he_normal", "std": 0.5}}}).to_dict()["model"]["init"]
    assert kept["std"] == 0.5  # a value set by hand is kept, applying or not


def test_name_defaults_to_the_file_stem(tmp_path):
    cfg = load_config(write(tmp_path / "my exp.yaml", "seed: 3\n"))
    assert cfg.name == "my_exp" and cfg.seed == 3


def test_resolved_config_round_trips():
    cfg = load_config({"model": {"layers": [["conv", {"ksize": [3, 5], "chn": 2}], 7]}, "train": {"epochs": 3}})
    assert load_config(cfg.to_dict()) == cfg


def test_overrides_parse_as_yaml_and_create_sections(tmp_path):
    path = write(tmp_path / "c.yaml", "train: {epochs: 5}\n")
    cfg = load_config(
        path,
        [
            "train.epochs=2",
            "optimizer.lr=1e-3",
            "model.layers=[[conv, {ksize: 3, chn: 4}], 8]",
            "regularizer.l2_decay=0.1",
        ],
    )
    assert cfg.train.epochs == 2 and cfg.optimizer.lr == 0.001 and cfg.regularizer.l2_decay == 0.1
    assert cfg.model.layers[0] == ["conv", {"ksize": 3, "chn": 4, "stride": 1}]


def test_scientific_notation_without_a_dot_is_a_float(tmp_path):
    cfg = load_config(write(tmp_path / "c.yaml", "optimizer: {lr: 1e-3}\nregularizer: {l2_decay: 5E-4}\n"))
    assert cfg.optimizer.lr == 0.001 and cfg.regularizer.l2_decay == 0.0005


def test_unknown_key_names_path_and_suggests(tmp_path):
    msg = error(write(tmp_path / "c.yaml", "train: {epoch: 3}\n"))
    assert str(tmp_path / "c.yaml") in msg and "train.epoch" in msg and "did you mean 'epochs'" in msg
    assert "allowed: epochs, batch_size" in msg


def test_wrong_type_and_range(tmp_path):
    assert "train.epochs: expected an integer, got 'ten'" in error({"train": {"epochs": "ten"}})
    assert "train.batch_size: must be between 1 and 1000000, got 0" in error({"train": {"batch_size": 0}})
    assert "train.epochs: must be between 1" in error({"train": {"epochs": -1}})
    assert "optimizer.lr: must be > 0" in error({"optimizer": {"lr": 0}})
    assert "train.show_params: expected true or false" in error({"train": {"show_params": 1}})
    assert "regularizer.mode: expected one of decoupled, penalty" in error({"regularizer": {"mode": "l2"}})


def test_layer_errors_name_the_layer_index():
    assert "model.layers[1].keep_prob: must be in (0, 1], got 0" in error(
        {"model": {"layers": [10, ["dropout", {"keep_prob": 0}]]}}
    )
    msg = error({"model": {"layers": [["convv", {"ksize": 3}]]}})
    assert (
        "model.layers[0]: unknown layer type 'convv'; allowed: full, conv, max, avg, dropout, noise, batch_normal, activation, flatten, serial, residual, parallel"
        in msg
    )
    assert "model.layers[0].chn: missing required key 'chn'" in error({"model": {"layers": [["conv", {"ksize": 3}]]}})
    assert "model.layers[0].ksiz: unknown key 'ksiz'" in error({"model": {"layers": [["conv", {"ksiz": 3, "chn": 2}]]}})
    assert "model.layers[2]: expected an int" in error({"model": {"layers": [10, 10, "conv"]}})


def test_pool_stride_must_divide_the_input():
    msg = error({"model": {"layers": [["conv", {"ksize": 3, "chn": 4}], ["max", {"stride": 3}]]}})
    assert "model.layers[1]: max: stride 3×3 does not divide the input size 8×8" in msg


def test_conv_after_a_flat_layer_is_an_error():
    assert "model.layers[1]: conv: needs image input" in error(
        {"model": {"layers": [10, ["conv", {"ksize": 3, "chn": 2}]]}}
    )


def test_huge_widths_are_refused_before_allocating():
    assert "parameters, more than" in error({"model": {"layers": [9_000_000, 9_000_000]}})


def test_unknown_data_set_and_optimizer():
    assert "data.name: unknown data set 'cifar7'" in error({"data": {"name": "cifar7"}})
    assert "optimizer.name: unknown optimizer 'adamm'" in error({"optimizer": {"name": "adamm"}})
    assert "data.shape: 'shape' is not used by data set 'digits'" in error({"data": {"shape": [8, 8, 1]}})


def test_missing_file_and_bad_yaml(tmp_path):
    assert "nope.yaml: file not found" in error(tmp_path / "nope.yaml")
    assert "invalid YAML at line 3, column 4: expected ',' or '}'" in error(
        write(tmp_path / "bad.yaml", "train:\n  epochs: {a\n  b: c\n")
    )
    assert "expected a mapping of config sections" in error(write(tmp_path / "list.yaml", "- 1\n- 2\n"))


def test_python_tags_are_rejected(tmp_path):
    msg = error(write(tmp_path / "evil.yaml", "name: !!python/object/apply:os.system ['echo hi']\n"))
    assert "unsafe or unknown YAML tag rejected" in msg


def test_overrides_index_into_layer_lists_and_set_a_layers_parameters():
    layers = [
        ["conv", {"ksize": 3, "chn": 4}],
        ["max", {"stride": 2}],
        ["dropout", {"keep_prob": 0.6}],
        ["batch_normal"],
        8,
    ]
    cfg = load_config(
        {"model": {"layers": layers}},
        [
            "model.layers[0].chn=6",
            "model.layers[2].keep_prob=0.8",
            "model.layers[3].exp_ratio=0.1",
            "model.layers[4]=16",
        ],
    )
    assert cfg.model.layers[0][1]["chn"] == 6 and cfg.model.layers[2] == [
        "dropout",
        {"keep_prob": 0.8, "scale": "train"},
    ]
    assert cfg.model.layers[3][1]["exp_ratio"] == 0.1 and cfg.model.layers[4] == ["full", {"width": 16}]
    nested = [["serial", {"repeat": 2, "layers": [["conv", {"ksize": 3, "chn": 4}]]}], 8]
    cfg = load_config({"model": {"layers": nested}}, {"model.layers[0].layers[0].chn": 5})
    assert cfg.model.layers[0][1]["layers"][0][1]["chn"] == 5
    assert "model.layers: no entry [7]: in a list of 5" in error(
        {"model": {"layers": layers}}, ["model.layers[7].chn=3"]
    )
    assert "model.layers[4].x: unknown key 'x'; allowed: width" in error(
        {"model": {"layers": layers}}, ["model.layers[4].x=1"]
    )
    cfg = load_config({}, ["model.layers[0].width=20", "model.layers[1]=7"])  # into the book's default [30, 10]
    assert cfg.model.layers == [["full", {"width": 20}], ["full", {"width": 7}]]
    assert "train: no entry [0]: in a mapping" in error({"train": {"epochs": 2}}, ["train[0]=1"])
    assert "model.xs: no entry [0]: it is not set" in error({}, ["model.xs[0]=1"])
    assert "model.layers[2].keep_prob: must be in (0, 1], got 2.0" in error(
        {"model": {"layers": layers}}, ["model.layers[2].keep_prob=2"]
    )


def test_run_names_cannot_escape_the_runs_folder():
    assert "name: must be letters, digits" in error({"name": "../../x"})


def test_bad_override_syntax():
    assert "--set epochs: expected KEY.PATH=VALUE" in error({}, ["epochs"])
    assert "<config> (with --set train.epochs.x): train: cannot set a key inside 3" in error(
        {"train": 3}, ["train.epochs.x=1"]
    )


def test_api_exports_one_error_type():
    assert issubclass(ConfigError, regbench.RegbenchError)


def test_a_key_given_twice_is_an_error(tmp_path):
    assert "key 'train' is given twice in one mapping at line 2" in error(
        write(tmp_path / "d.yaml", "train: {epochs: 3}\ntrain: {batch_size: 32}\n")
    )
    msg = error(write(tmp_path / "l.yaml", "model: {layers: [[conv, {ksize: 3, chn: 6, ksize: 5}]]}\n"))
    assert "key 'ksize' is given twice" in msg
