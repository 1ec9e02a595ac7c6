"""The report as a list of blocks (headings, paragraphs, tables, figures, links) and its two renderings:
Markdown, and one self-contained HTML file (figures embedded) whose CSS keeps every column on screen and
on an A4 landscape page: cells wrap instead of overflowing, figures shrink to the page width."""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .render import markdown_table


@dataclass
class Heading:
    level: int
    text: str


@dataclass
class Para:
    text: str


@dataclass
class Bullets:
    items: list[str]


@dataclass
class TableBlock:
    headers: list[str]
    rows: list[list[str]]
    numeric: list[bool] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # printed under the table (e.g. the full layer lists)
    titles: dict[tuple[int, int], str] = field(default_factory=dict)  # (row, column) → the cell's full text


@dataclass
class Images:
    items: list[tuple[str, str]]  # (file name in the report folder, caption)
    small: bool = False  # printed three to a row (the per-run histograms), not page-wide


@dataclass
class Links:
    items: list[tuple[str, list[tuple[str, str]]]]  # (label, [(text, relative path)])


Block = Heading | Para | Bullets | TableBlock | Images | Links


def _md_target(path: str) -> str:
    return f"<{path}>" if re.search(r"[\s()<>]", path) else path


def to_markdown(blocks: Sequence[Block]) -> str:
    """The document as Markdown (figures linked, not embedded)."""
    out: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            out.append(f"{'#' * b.level} {b.text}")
        elif isinstance(b, Para):
            out.append(b.text)
        elif isinstance(b, Bullets):
            out.append("\n".join(f"- {item}" for item in b.items))
        elif isinstance(b, TableBlock):
            out.append(markdown_table(b.headers, b.rows, b.numeric).rstrip("\n"))
            if b.notes:
                out.append("\n".join(f"- {n}" for n in b.notes))
        elif isinstance(b, Images):
            out.append("\n\n".join(f"![{cap}]({_md_target(f)})\n*{cap}*" for f, cap in b.items))
        elif isinstance(b, Links):
            out.append(
                "\n".join(
                    f"- **{label}**: " + " · ".join(f"[{t}]({_md_target(p)})" for t, p in links)
                    for label, links in b.items
                )
            )
    return "\n\n".join(out) + "\n"


# Screen: up to 1400 px wide. Print: A4 landscape, small type. Cells wrap between words, and names and layer
# lists also after `_ - . / , )` (<wbr>), so a column is never wider than its longest word and the table
# stays within the page without cutting words in the middle.
CSS = """
body { font-family: system-ui, 'Noto Sans CJK KR', 'NanumGothic', sans-serif; margin: 2em auto; max-width: 1400px;
       padding: 0 1em; color: #222; }
table { border-collapse: collapse; font-size: clamp(7px, 0.88vw, 0.85em); margin: 0.5em 0 0.3em; max-width: 100%; }
th, td { border: 1px solid #ccc; padding: 3px 4px; overflow-wrap: break-word; vertical-align: top; }
th { background: #f0f0f0; font-weight: 600; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
ul.tnotes { font-size: 0.8em; margin-top: 0; color: #444; }
figure { display: inline-block; margin: 0.4em; vertical-align: top; max-width: 100%; }
figcaption { font-size: 0.8em; color: #555; } img { max-width: 100%; height: auto; }
code { overflow-wrap: anywhere; } li { overflow-wrap: anywhere; }
@page { size: A4 landscape; margin: 8mm; }
@media print {
  body { max-width: none; margin: 0; padding: 0; font-size: 9pt; }
  table { font-size: 6.5pt; } th, td { padding: 1px 2px; }
  thead { display: table-header-group; } tr, figure { break-inside: avoid; }
  h2, h3 { break-after: avoid; } a { color: inherit; text-decoration: none; }
  figure img { max-height: 170mm; } figure.small { max-width: 31%; margin: 0.2em; }
}
"""

MIME = {".png": "image/png", ".svg": "image/svg+xml"}


def _cell_html(text: str) -> str:
    # a seed group's `mean±std` may break before the ±; run names and layer lists after their separators
    out = html.escape(text, quote=False).replace("±", "<wbr>±")
    return re.sub(r"([_\-/,)])(?=\w)", r"\1<wbr>", out)


def to_html(blocks: Sequence[Block], folder: Path, title: str, lang: str = "en") -> str:
    """The same document as HTML with every figure embedded (base64), so the file stands alone."""
    e = html.escape
    out = [
        f"<!DOCTYPE html>\n<html lang='{e(lang)}'><head><meta charset='utf-8'>"
        f"<meta name='viewport' content='width=device-width'><title>{e(title)}</title><style>{CSS}</style></head><body>"
    ]
    for b in blocks:
        if isinstance(b, Heading):
            out.append(f"<h{b.level}>{e(b.text)}</h{b.level}>")
        elif isinstance(b, Para):
            out.append("<p>" + re.sub(r"`([^`]+)`", r"<code>\1</code>", e(b.text)) + "</p>")
        elif isinstance(b, Bullets):
            out.append("<ul>" + "".join(f"<li>{e(i)}</li>" for i in b.items) + "</ul>")
        elif isinstance(b, TableBlock):
            out.append(_table_html(b))
        elif isinstance(b, Images):
            for f, cap in b.items:
                mime = MIME.get(Path(f).suffix.lower(), "application/octet-stream")
                data = base64.b64encode((folder / f).read_bytes()).decode()
                out.append(
                    f"<figure{' class=small' if b.small else ''}>"
                    f"<img src='data:{mime};base64,{data}' alt='{e(cap, quote=True)}'>"
                    f"<figcaption>{e(cap)}</figcaption></figure>"
                )
        elif isinstance(b, Links):
            items = "".join(
                f"<li><b>{e(label)}</b>: "
                + " · ".join(f"<a href='{e(p, quote=True)}'>{e(t)}</a>" for t, p in links)
                + "</li>"
                for label, links in b.items
            )
            out.append(f"<ul>{items}</ul>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def _table_html(b: TableBlock) -> str:
    e = html.escape
    num = b.numeric or [False] * len(b.headers)
    body = []
    for i, row in enumerate(b.rows):
        cells = []
        for j, (c, n) in enumerate(zip(row, num, strict=False)):
            title = b.titles.get((i, j))
            attrs = (" class=num" if n else "") + (f" title='{e(title, quote=True)}'" if title else "")
            cells.append(f"<td{attrs}>{_cell_html(c)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    head = "<thead><tr>" + "".join(f"<th>{e(h)}</th>" for h in b.headers) + "</tr></thead>"
    notes = "<ul class=tnotes>" + "".join(f"<li>{e(n)}</li>" for n in b.notes) + "</ul>" if b.notes else ""
    return f"<table>{head}<tbody>{''.join(body)}</tbody></table>{notes}"
