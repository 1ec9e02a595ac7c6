"""The report in a real browser: headless Chromium prints a 6-run report to A4 and every column header, run
name and verdict is in the printed text (pdftotext); on screen nothing is wider than the window.

Needs Debian's `chromium` and `poppler-utils` (`.ci/run` installs them when missing); skipped without them."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import tiny

import regbench
from regbench.analysis.report import write_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PDFTOTEXT = shutil.which("pdftotext")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and PDFTOTEXT), reason="needs chromium and pdftotext (apt-get install chromium poppler-utils)"
)

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LAYERS = [["conv", {"ksize": 3, "chn": 4}], ["max", {"stride": 2}], ["dropout", {"keep_prob": 0.7}], 16]


def chromium(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp / f"profile-{len(list(tmp.glob('profile-*')))}"
    cmd = [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=True)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """Six runs (three configs × two seeds, one with a long name and layer list) and their report."""
    root = tmp_path_factory.mktemp("print")
    for name, over in (
        ("base", {}),
        ("l2_with_a_rather_long_config_name", {"regularizer__l2_decay": 0.01}),
        ("dropout", {"model__layers": LAYERS}),
    ):
        for seed in (1, 2):
            regbench.train(tiny(name=name, seed=seed, optimizer__lr=0.01, **over), root / "runs", quiet=True)
    comp = regbench.compare(root / "runs", baseline="base")
    res = write_report([root / "runs"], root / "report", baseline="base", lang="en", samples=2)
    return comp, res, root


def squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


def test_printed_pdf_holds_every_column_run_and_verdict(report):
    comp, res, root = report
    pdf = root / "report.pdf"
    chromium(root, f"--print-to-pdf={pdf}", "--no-pdf-header-footer", res.html.as_uri())
    assert re.search(rb"/MediaBox\s*\[\s*0 0 841\.9\d* 59[45]\.\d+", pdf.read_bytes())  # A4 landscape
    text = subprocess.run([PDFTOTEXT, str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    flat = squash(text)  # a header or name may wrap inside its cell; its characters stay in order
    headers = [comp.header(k) for k in comp.columns]
    assert "verdict" in headers and "p" in headers
    missing = [h for h in headers if squash(h) not in flat]
    assert not missing, f"column headers not printed: {missing}"
    names = [r.name for r in comp.runs]
    assert len(names) == 6 and not [n for n in names if squash(n) not in flat]
    verdicts = [row.verdict.text for row in comp.rows]
    assert "baseline" in verdicts and all(squash(v) in flat for v in verdicts)
    # the comparison table lies on the first page: its last column and the last row's verdict are there
    first = squash(text.split("\f")[0])
    assert squash("verdict") in first and squash(comp.rows[-1].verdict.text) in first
    # the compact model column: the long layer list is a note under the table, printed once in full
    assert squash("M1: conv(3,4)-max(2)-dropout(0.7)-16") in flat


PROBE = """<script>
const right = Math.max(...[...document.querySelectorAll('body *')].map(e => e.getBoundingClientRect().right));
document.body.setAttribute('data-widths',
  [document.documentElement.scrollWidth, window.innerWidth, Math.ceil(right)].join(' '));
</script></body>"""


@pytest.mark.parametrize("width", [1400, 1000])
def test_nothing_overflows_the_window(report, width):
    _, res, root = report
    probe = res.html.with_name(f"probe-{width}.html")
    probe.write_text(res.html.read_text(encoding="utf-8").replace("</body>", PROBE), encoding="utf-8")
    dom = chromium(root, f"--window-size={width},900", "--dump-dom", probe.as_uri()).stdout
    scroll, inner, right = map(int, re.search(r'data-widths="(\d+) (\d+) (\d+)"', dom).groups())
    assert inner == width and scroll <= inner and right <= inner, (scroll, inner, right)
