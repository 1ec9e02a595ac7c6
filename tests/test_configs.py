"""Every shipped YAML under configs/ is valid on a machine without any data file, and says what it reproduces."""

from __future__ import annotations

from pathlib import Path

import pytest

from regbench.core.schema import load_yaml
from regbench.experiments.suite import load_suites
from regbench.experiments.sweep import load_sweep
from regbench.resolve import check_config, load_config

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
FILES = sorted(CONFIGS.rglob("*.yaml"))


def kind(path: Path) -> str:
    if path.name == "suites.yaml":
        return "suites"
    raw = load_yaml(path.read_text(encoding="utf-8"), str(path))
    return "sweep" if isinstance(raw, dict) and "base" in raw and "params" in raw else "config"


def test_the_course_parts_are_there():
    names = {p.relative_to(CONFIGS).as_posix() for p in FILES}
    assert "flowers_dropout.yaml" in names and "suites.yaml" in names  # the README's example
    for folder in ("ch8", "dlfs", "mnist_lecture", "cifar10"):
        assert any(n.startswith(folder + "/") for n in names), folder


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.relative_to(CONFIGS).as_posix())
def test_config_validates_without_data_files(path: Path):
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# "), "a shipped file starts with a comment naming the experiment it reproduces"
    what = kind(path)
    if what == "suites":
        assert load_suites(path)
    elif what == "sweep":
        sweep = load_sweep(path)
        for slot, point in enumerate(sweep.points()):  # every trial's config (Sweep.validate also wants the files)
            check_config(sweep.trial_config(point, slot))
    else:
        cfg = load_config(path)
        info, rows = check_config(cfg)  # the shapes from the data set's description: no file is read
        assert info.head_sizes and rows


def test_flowers_dropout_is_the_chapter_8_config():
    top = load_config(CONFIGS / "flowers_dropout.yaml").to_dict()
    assert top == load_config(CONFIGS / "ch8" / "flowers_cnn_dropout.yaml").to_dict()
    assert top["data"]["name"] == "flowers" and top["train"]["epochs"] == 10 and top["train"]["batch_size"] == 10


def test_every_config_belongs_to_a_suite():
    listed = {p.resolve() for s in load_suites(CONFIGS / "suites.yaml").values() for p in s.configs}
    loose = [p for p in FILES if kind(p) == "config" and p.resolve() not in listed]
    assert [p.name for p in loose] == ["flowers_dropout.yaml"]  # the README's copy of ch8/flowers_cnn_dropout.yaml


def test_book_defaults_in_the_chapter_8_configs():
    for path in sorted((CONFIGS / "ch8").glob("*.yaml")):
        cfg = load_config(path)
        assert (cfg.train.epochs, cfg.train.batch_size, cfg.optimizer.name, cfg.optimizer.lr) == (10, 10, "adam", 0.001)
        assert (cfg.model.init.type, cfg.model.init.std) == ("normal", 0.03)
        assert check_config(cfg)[0].input_shape == (3, 96, 96)
    assert check_config(load_config(CONFIGS / "ch8" / "office31_cnn.yaml"))[0].head_sizes == [3, 31]
