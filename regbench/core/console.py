"""The book's console formats (chap05 Dataset.train_prt_result/test_prt_result, show_select_results,
CnnRegModel.show_param_dist), in Korean as printed by the book or in English (`--lang en`)."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

TEXT = {
    "ko": {
        "dist": "추정확률분포",
        "est": "추정",
        "ans": "정답",
        "head": "[ {} 추정결과 ]",
    },
    "en": {
        "dist": "estimated distribution",
        "est": "estimate",
        "ans": "answer",
        "head": "[ {} estimates ]",
    },
}
HEAD_TITLES_KO = {"domain": "도메인", "object": "상품"}  # book's Office-31 captions


def acc_text(accs: Sequence[float] | None) -> str:
    """`0.289`, or `0.289+0.120` for two heads (book's Office-31 form); `-` when there is no split."""
    return "-" if accs is None else "+".join(f"{a:5.3f}" for a in accs)


def epoch_line(
    epoch: int,
    cost: float,
    train_acc: Sequence[float],
    val_acc: Sequence[float] | None,
    secs: int,
    total: int,
) -> str:
    return (
        f"    Epoch {epoch}: cost={cost:5.3f}, accuracy={acc_text(train_acc)}/{acc_text(val_acc)} ({secs}/{total} secs)"
    )


def train_started(name: str) -> str:
    return f"Model {name} train started:"


def train_ended(name: str, secs: int) -> str:
    return f"Model {name} train ended in {secs} secs:"


def test_report(name: str, accs: Sequence[float], secs: int) -> str:
    return f"Model {name} test report: accuracy = {acc_text(accs)}, ({secs} secs)\n"


def visualization(name: str) -> str:
    return f"Model {name} Visualization"


def vector_text(values: Sequence[float], max_cnt: int = 0) -> str:
    """Book's vector_to_str(100*p, '%2.0f', max_cnt)."""
    shown = list(values) if max_cnt == 0 or len(values) <= max_cnt else list(values)[:max_cnt]
    tail = "" if len(shown) == len(values) else ",..."
    return "[" + ",".join(f"{v:2.0f}" for v in shown) + tail + "]"


def sample_line(probs: Sequence[float], estimate: str, answer: str, lang: str, max_cnt: int = 0) -> str:
    t = TEXT[lang]
    mark = "O" if estimate == answer else "X"
    return f"{t['dist']} {vector_text([100 * p for p in probs], max_cnt)} => {t['est']} {estimate} : {t['ans']} {answer} => {mark}"


def head_caption(head: str, lang: str) -> str:
    title = HEAD_TITLES_KO.get(head, head) if lang == "ko" else head
    return TEXT[lang]["head"].format(title)


def near_zero_line(near: int, total: int) -> str:
    pct = near / total * 100 if total else 0.0
    return f"Near 0 parameters = {pct:4.1f}%({near}/{total})"


class Printer:
    """Prints lines to stdout (unless quiet) and keeps them for the run directory's log.txt."""

    def __init__(self, quiet: bool = False):
        self.quiet = quiet
        self.lines: list[str] = []

    def __call__(self, text: str = "") -> None:
        self.lines.append(text)
        if not self.quiet:
            try:
                sys.stdout.write(text + "\n")
                sys.stdout.flush()
            except BrokenPipeError:  # `regbench train … | head`: the reader left; train on, print no more
                self.quiet = True
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
