"""Every console block of README.md that can run here is run, and what it prints is compared with the block,
so a change that moves a documented number fails here until the README is updated (the diff names the block).

Threads are pinned to 1 (`default_threads` → 1: the commands stay exactly as the README writes them), so the numbers
repeat on any machine. Not re-run here: the sweep's printout (100 trials, ~30 s alone) and the flowers
`regbench.book` cell (needs the photos); EXPERIMENTS.md's cheap rows are checked in test_experiments_rows.py.
"""

from __future__ import annotations

import contextlib
import io
import re
import traceback

import pytest
from readme_blocks import README, ROOT, block, check
from typer.testing import CliRunner

import regbench
from regbench.cli.main import app

runner = CliRunner()


@pytest.fixture
def here(tmp_path, monkeypatch):
    """A fresh working directory with the repository's configs, as after a clone; one CPU thread."""
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("regbench.training.plan.default_threads", lambda *a, **k: 1)
    return tmp_path


def cli(*args: str) -> tuple[int, str]:
    res = runner.invoke(app, list(args))
    return res.exit_code, res.output


def test_make_demo_block(here):
    code, out = cli("train", "configs/digits_cnn.yaml")
    assert code == 0, out
    check(block("Run saved in runs/"), out, "regbench train configs/digits_cnn.yaml")


BAD_FILES = {  # what the README's `$ regbench train …` error examples read
    "bad.yaml": "model: {layers: [10, [dropout, {keep_prob: 0}]]}\n",
    "cnn.yaml": "model: {layers: [[conv, {ksize: 3, chn: 4}], [conv, {ksize: 3, chn: 8}], [dropout, {keep_prob: 0.5}], [max, {stride: 3}]]}\n",
    "flowers.yaml": "data: {name: flowers}\nmodel: {layers: [30, 10]}\n",
}


@pytest.mark.parametrize("anchor", ["$ regbench train bad.yaml", "$ regbench train flowers.yaml"])
def test_error_line_blocks(here, anchor):
    for name, text in BAD_FILES.items():
        (here / name).write_text(text, encoding="utf-8")
    b = block(anchor)
    out = []
    for line in b.body:
        if line.startswith("$ regbench "):
            code, printed = cli(*line.split()[2:])
            assert code == 2, printed
            out += [line, *printed.splitlines()]
    check(b, out)
    assert not (here / "runs").exists()  # nothing is written


def run_python(code: str) -> str:
    """Run a README Python block as a script would, returning what it printed."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        exec(compile(code, "README.md", "exec"), {"__name__": "__readme__"})
    return buf.getvalue()


def test_python_api_block(here):
    code = "\n".join(block('run = regbench.train("configs/digits_cnn.yaml"', lang="python").body)
    check(block("Run('runs/digits_cnn-"), run_python(code), "the Python API example")


def test_python_error_block(here):
    b = block(">>> regbench.train(", lang="python")
    call = b.body[0].removeprefix(">>> ")
    with pytest.raises(regbench.RegbenchError) as info:
        eval(call, {"regbench": regbench})
    e = info.value
    check(b, [b.body[0], f"{type(e).__module__}.{type(e).__qualname__}: {e}"])
    assert "Traceback" not in "".join(traceback.format_exception_only(e))


def test_book_digits_block(here):
    code = "from regbench.book import *\n" + "\n".join(block('dd = RegbenchDataset("digits"', lang="python").body)
    check(block("digits(select, "), run_python(code), "the regbench.book digits example")


def test_compare_example_table_and_its_numbers(here):
    """The README's compare example: the 3 × 3 runs, then the markdown table (train seconds masked) and the
    numbers the prose quotes from it (train seconds per member masked: they are timings)."""
    loop = block("for seed in 1 2 3; do", lang="bash").body
    seeds = re.search(r"for seed in ([\d ]+); do", loop[0]).group(1).split()
    configs = re.search(r"for c in ([\w ]+); do", loop[1]).group(1).split()
    for seed in seeds:
        for c in configs:
            code, out = cli("train", f"configs/{c}.yaml", "--set", f"seed={seed}", "-q")
            assert code == 0, out
    code, out = cli("compare", "runs", "--baseline", "digits_cnn", "--format", "markdown")
    assert code == 0, out
    text = README.read_text(encoding="utf-8").splitlines()
    head = next(i for i, line in enumerate(text) if line.startswith("| name | n | data | model | regularizer |"))
    documented = text[head : next(i for i in range(head, len(text)) if not text[i].startswith("|"))]
    secs = documented[0].split(" | ").index("train s/member")

    def masked(rows: list[str]) -> list[str]:
        return [" | ".join("…" if i == secs else v for i, v in enumerate(r.split(" | "))) for r in rows]

    lines = out.strip().splitlines()
    if masked(lines[2:]) != masked(documented[2:]) or lines[:2] != documented[:2]:
        import difflib

        diff = "\n".join(difflib.unified_diff(masked(documented), masked(lines), "README.md", "now", lineterm=""))
        pytest.fail(f"README.md's compare example table (section 'Compare and report') moved:\n{diff}", pytrace=False)
    rows = {r.split(" | ")[0].lstrip("| "): r.split(" | ") for r in lines[2:]}
    cols = [c.strip("| ") for c in documented[0].split(" | ")]
    drop = rows["digits_cnn_dropout"]
    delta, p = float(drop[cols.index("Δ test acc")]), float(drop[cols.index("p")])
    near0 = rows["digits_cnn_l1"][cols.index("near 0 %")].split("±")[0]
    prose = " ".join(README.read_text(encoding="utf-8").split())
    assert f"dropout is {abs(delta) * 100:.1f} points lower, p={p:.2f}" in prose
    assert f"L1 did leave {near0}% of the weights" in prose
