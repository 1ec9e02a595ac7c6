"""A run's learning curves as a small PNG, drawn with Pillow: a few milliseconds a run, where a matplotlib
figure costs 50-100 ms, which a sweep of many small runs trained side by side would pay per trial (the report
draws its own curves with matplotlib)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

W, H = 800, 320  # pixels: two panels side by side
PANEL_TOP, PANEL_BOTTOM, LEFT, RIGHT, GAP = 46, 276, 58, 14, 70
TRAIN, VAL = (31, 119, 180), (255, 127, 14)  # matplotlib's first two colours
GRID, FRAME, TEXT = (225, 225, 225), (90, 90, 90), (30, 30, 30)


def series(rows: list[dict], key: str) -> list[tuple[float, float]]:
    """(epoch, value) of `key` in the metrics rows; the first head's value where there are several."""
    pts = []
    for r in rows:
        v = r.get(key)
        v = v[0] if isinstance(v, list) and v else v
        if isinstance(r.get("epoch"), int) and isinstance(v, (int, float)) and v == v and abs(v) != float("inf"):
            pts.append((float(r["epoch"]), float(v)))
    return pts


def ticks(lo: float, hi: float, n: int = 4) -> list[float]:
    return [lo + (hi - lo) * i / n for i in range(n + 1)]


def label(v: float) -> str:
    return f"{v:.3g}" if abs(v) < 1e4 else f"{v:.1e}"


def dashed(draw, pts: list[tuple[float, float]], fill, width: int = 2, dash: float = 7.0) -> None:
    """A polyline drawn in dashes of `dash` pixels (Pillow draws solid lines only)."""
    on, left = True, dash
    for (x0, y0), (x1, y1) in zip(pts, pts[1:], strict=False):
        seg = ((x1 - x0) ** 2 + (y1 - y0) ** 2) ** 0.5
        pos = 0.0
        while pos < seg:
            step = min(left, seg - pos)
            a, b = pos / seg, (pos + step) / seg
            if on:
                draw.line(
                    [(x0 + (x1 - x0) * a, y0 + (y1 - y0) * a), (x0 + (x1 - x0) * b, y0 + (y1 - y0) * b)], fill, width
                )
            pos, left = pos + step, left - step
            if left <= 0:
                on, left = not on, dash


def place(box: tuple[float, ...], p: tuple[float, float]) -> tuple[float, float]:
    """Data point `p` (epoch, value) in pixels of the panel `box` = (x0, x1, y0, y1, epoch0, epoch1, low, high)."""
    x0, x1, y0, y1, ex0, ex1, vy0, vy1 = box
    return x0 + (p[0] - ex0) / (ex1 - ex0) * (x1 - x0), y1 - (p[1] - vy0) / (vy1 - vy0) * (y1 - y0)


def polyline(draw, pts: list[tuple[float, float]], fill, dash: bool) -> None:
    if dash:
        dashed(draw, pts, fill)
    else:
        draw.line(pts, fill=fill, width=2)


@lru_cache(maxsize=1)
def fonts():
    """Pillow's built-in font at the title's and the labels' size (loaded once per process)."""
    from PIL import ImageFont

    return ImageFont.load_default(size=13), ImageFont.load_default(size=11)


def run_curves_png(rows: list[dict], file: Path, title: str | None = None) -> Path:
    """Loss and accuracy per epoch: train dashed, validation solid (first head), one panel each."""
    from PIL import Image, ImageDraw

    img = Image.new("P", (W, H), "white")  # a palette image: a third of the time of RGB to draw and encode
    draw = ImageDraw.Draw(img)
    font, small = fonts()
    if title:
        draw.text((W / 2, 6), title, fill=TEXT, font=font, anchor="ma")
    width = (W - 2 * LEFT - RIGHT - GAP) / 2
    for i, (name, keys) in enumerate((("loss", ("train_loss", "val_loss")), ("accuracy", ("train_acc", "val_acc")))):
        x0 = LEFT + i * (width + GAP + LEFT)
        x1, y0, y1 = x0 + width, PANEL_TOP, PANEL_BOTTOM
        data = [series(rows, k) for k in keys]
        pts = [p for d in data for p in d]
        draw.text(((x0 + x1) / 2, 26), f"{name} per epoch", fill=TEXT, font=font, anchor="ma")
        draw.text(((x0 + x1) / 2, y1 + 22), "epoch", fill=TEXT, font=small, anchor="ma")
        if not pts:
            draw.rectangle([x0, y0, x1, y1], outline=FRAME)
            continue
        ex0, ex1 = min(p[0] for p in pts), max(p[0] for p in pts)
        vy0, vy1 = min(p[1] for p in pts), max(p[1] for p in pts)
        pad = (vy1 - vy0) * 0.06 or abs(vy1) * 0.06 or 0.5
        vy0, vy1 = vy0 - pad, vy1 + pad
        ex1 = ex1 if ex1 > ex0 else ex0 + 1

        box = (x0, x1, y0, y1, ex0, ex1, vy0, vy1)
        for v in ticks(vy0, vy1):
            y = place(box, (ex0, v))[1]
            draw.line([(x0, y), (x1, y)], GRID)
            draw.text((x0 - 4, y), label(v), fill=TEXT, font=small, anchor="rm")
        step = max(1, round((ex1 - ex0) / 5))
        epoch = ex0
        while epoch <= ex1 + 1e-9:
            x = place(box, (epoch, vy0))[0]
            draw.line([(x, y0), (x, y1)], GRID)
            draw.text((x, y1 + 4), f"{epoch:g}", fill=TEXT, font=small, anchor="ma")
            epoch += step
        draw.rectangle([x0, y0, x1, y1], outline=FRAME)
        for d, colour, key in zip(data, (TRAIN, VAL), keys, strict=True):
            xy = [place(box, p) for p in d]
            if len(xy) > 1:
                polyline(draw, xy, colour, dash=key.startswith("train"))
            for x, y in xy if len(xy) <= 60 else []:
                draw.ellipse([x - 2.5, y - 2.5, x + 2.5, y + 2.5], fill=colour)
        for j, (key, colour) in enumerate(zip(keys, (TRAIN, VAL), strict=True)):  # the legend, out of the curves' way
            lx, ly = x1 - 118, (y0 + 8 if i == 0 else y1 - 40) + j * 16  # loss falls, accuracy rises
            polyline(draw, [(lx, ly + 7), (lx + 24, ly + 7)], colour, dash=j == 0)
            draw.text((lx + 30, ly), key.replace("_", " "), fill=TEXT, font=small)
    file = Path(file)
    file.parent.mkdir(parents=True, exist_ok=True)
    img.save(file, compress_level=1)  # fast zlib: a curve plot compresses well anyway
    return file
