"""core.layerlist: walking a resolved layer list (nested blocks included) without torch, and its texts."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import regbench.core.layerlist as describe_module
from regbench.core.errors import ConfigError
from regbench.core.layerlist import LayerEntry, config_layers, entries, regularizer_setting, summary, walk
from regbench.nn.layers import describe_spec, normalize_layers, parse_layers

NESTED = [
    ["serial", {"repeat": 2, "layers": [["conv", {"ksize": 3, "chn": 4}], ["dropout", {"keep_prob": 0.5}]]}],
    [
        "parallel",
        {
            "branches": [
                [["conv", {"ksize": [1, 3], "chn": 2, "stride": [1, 1], "actfunc": "tanh", "batch_normal": True}]],
                [],
                [
                    [
                        "residual",
                        {"layers": [["noise", {"type": "uniform", "low": -0.5, "high": 0.5}], ["batch_normal"]]},
                    ]
                ],
            ]
        },
    ],
    ["max", {"stride": [2, 2]}],
    ["activation", {"actfunc": "sigmoid"}],
    ["flatten"],
    10,
    ["full", {"width": 5, "batch_normal": {"epsilon": 0.001}}],
    ["noise", {"std": 0.01}],
]


def test_walk_yields_every_layer_with_its_path_and_depth():
    got = [(e.path, e.depth, e.type) for e in walk(normalize_layers(NESTED))]
    assert got == [
        ("model.layers[0]", 0, "serial"),
        ("model.layers[0].layers[0]", 1, "conv"),
        ("model.layers[0].layers[1]", 1, "dropout"),
        ("model.layers[1]", 0, "parallel"),
        ("model.layers[1].branches[0][0]", 1, "conv"),
        ("model.layers[1].branches[2][0]", 1, "residual"),
        ("model.layers[1].branches[2][0].layers[0]", 2, "noise"),
        ("model.layers[1].branches[2][0].layers[1]", 2, "batch_normal"),
        ("model.layers[2]", 0, "max"),
        ("model.layers[3]", 0, "activation"),
        ("model.layers[4]", 0, "flatten"),
        ("model.layers[5]", 0, "full"),
        ("model.layers[6]", 0, "full"),
        ("model.layers[7]", 0, "noise"),
    ]
    first = next(walk(NESTED, "x"))
    assert first.path == "x[0]" and first.is_block and [len(n) for n in first.nested()] == [2]
    assert entries([7])[0] == LayerEntry("model.layers[0]", "full", {"width": 7})  # a bare int is a full layer


@pytest.mark.parametrize(
    "raw", [NESTED, [["dropout"], ["noise", {"type": "uniform"}], 3], [["serial", {"layers": []}]]]
)
def test_texts_match_the_built_layers_description(raw):
    plain = normalize_layers(raw)
    assert summary(plain) == "-".join(describe_spec(s) for s in parse_layers(plain))
    for entry in walk(plain):  # every nested entry too
        (spec,) = parse_layers([[entry.type, entry.params]])
        assert entry.text == describe_spec(spec)


def test_summary_and_regularizer_settings():
    plain = normalize_layers(NESTED)
    assert summary(plain) == (
        "serial×2[conv(3,4)-dropout(0.5)]-parallel[conv(1x3,2,tanh,bn) | id | residual[noise(uniform -0.5..0.5)-"
        "batch_normal]]-max(2x2)-sigmoid-flatten-10-5(bn)-noise(normal std=0.01)"
    )
    settings = [(e.type, regularizer_setting(e)) for e in walk(plain) if regularizer_setting(e) is not None]
    assert settings == [("dropout", "0.5"), ("noise", "uniform -0.5..0.5"), ("batch_normal", ""), ("noise", "0.01")]
    assert summary([]) == "" and config_layers({"model": {"layers": [3]}}) == [3] and config_layers({}) is None


@pytest.mark.parametrize(
    ("layers", "path"),
    [
        (None, "model.layers"),
        ([30, "x"], "model.layers[1]"),
        ([["conv", 1]], "model.layers[0]"),
        ([["serial", {"layers": [["dropout", {"keep_prob": "high"}]]}]], "model.layers[0].layers[0]"),
        ([["parallel", {"branches": 3}]], "model.layers[0].branches"),
        ([["conv", {"chn": 3}]], "model.layers[0]"),
    ],
)
def test_malformed_lists_raise_config_error_naming_the_path(layers, path):
    with pytest.raises(ConfigError) as e:
        summary(layers)
    assert e.value.path == path


def test_no_torch_import():
    """Readers of run directories describe a model without importing torch (only stdlib and regbench.core)."""
    tree = ast.parse(Path(describe_module.__file__).read_text(encoding="utf-8"))
    modules = [
        ("." * n.level + (n.module or "")) if isinstance(n, ast.ImportFrom) else a.name
        for n in ast.walk(tree)
        if isinstance(n, (ast.Import, ast.ImportFrom))
        for a in (n.names if isinstance(n, ast.Import) else [None])
    ]
    assert all(
        m in ("__future__", "collections.abc", "dataclasses", "typing") or m.startswith("..core") for m in modules
    )
