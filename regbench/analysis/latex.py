"""`compare --format latex`: the table as a booktabs `tabular` that compiles as is (needs `\\usepackage{booktabs}`).

A seed group's cell is `mean $\\pm$ std`; n, Δ, p and the verdict are columns as in the table; a row whose
verdict is significant (better/worse at p < 0.05) gets a `$^{*}$` on its metric, explained in a comment."""

from __future__ import annotations

import re
from collections.abc import Sequence

# text-mode escapes for LaTeX's special characters, and the non-ASCII signs compare's cells use
ESCAPES = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "±": r"$\pm$",
    "Δ": r"$\Delta$",
    "−": r"$-$",
    "≤": r"$\leq$",
    "≥": r"$\geq$",
    "…": r"\ldots{}",
    "×": r"$\times$",
    "<": r"$<$",
    ">": r"$>$",
}
_PATTERN = re.compile("|".join(re.escape(k) for k in ESCAPES))


def escape(text: str) -> str:
    """`text` safe in LaTeX text mode (every special character escaped)."""
    return _PATTERN.sub(lambda m: ESCAPES[m.group(0)], str(text))


def latex_table(
    title: str,
    headers: Sequence[str],
    cells: Sequence[Sequence[str]],
    numeric: Sequence[bool],
    marked: Sequence[int] = (),
    mark_column: int | None = None,
) -> str:
    """A booktabs tabular: numeric columns right-aligned; rows in `marked` get `$^{*}$` in `mark_column`."""
    spec = "".join("r" if n else "l" for n in numeric)
    lines = [
        f"% regbench compare: {' '.join(title.split())}",
        "% needs \\usepackage{booktabs} in the preamble",
    ]
    if marked and mark_column is not None:
        lines.append(f"% $^{{*}}$: {headers[mark_column]} differs from the baseline (Welch's t-test, p < 0.05)")
    lines += [
        f"\\begin{{tabular}}{{{spec}}}",
        "\\toprule",
        " & ".join(escape(h) for h in headers) + r" \\",
        "\\midrule",
    ]
    for i, row in enumerate(cells):
        out = [escape(c) for c in row]
        if i in marked and mark_column is not None:
            out[mark_column] += "$^{*}$"
        lines.append(" & ".join(out) + r" \\")
    lines += ["\\bottomrule", "\\end{tabular}"]
    return "\n".join(lines) + "\n"
