"""`data.augment`: random per-sample transforms of each training batch, run on the training device.

The list is applied in order to every training batch (never to validation or test). An entry is a name
or `{name: params}`; a bare value is the main parameter (`{rotate: 15}`, `{hflip: 0.3}`, `{crop: 4}`):

    hflip, vflip   {p: 0.5}                                  mirror with probability p
    crop           {size: input size, padding: 4}            pad with zeros, crop back at a random place
    rotate         {degrees: 15}                             rotate by a uniform angle in ±degrees
    affine         {degrees: 0, translate: [fx, fy], scale: [lo, hi]}   rotate, shift (fraction of W, H), zoom
    erase          {p: 0.5, scale: [0.02, 0.33], ratio: [0.3, 3.3], value: 0}   blank a random rectangle

torchvision.transforms.v2's random transforms draw one set of parameters per call from torch's global
generator, so on a batch they would flip, crop or rotate every image the same way. Here each sample gets
its own draw from the run's generator: flips and padding use v2's functional kernels, crops are a
gather, rotations and zooms one batched `affine_grid`/`grid_sample` (bilinear, zeros outside).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..core.errors import ConfigError
from ..core.registry import Registry
from ..core.schema import describe, parse, require

if TYPE_CHECKING:
    import torch

Augment = Callable[["torch.Tensor", "torch.Generator"], "torch.Tensor"]


# ----------------------------------------------------------------------------------------------- params
@dataclass(frozen=True)
class Flip:
    p: float = 0.5  # probability that a sample is mirrored

    def __post_init__(self):
        require(0 <= self.p <= 1, "p", "must be in [0, 1]", self.p)


@dataclass(frozen=True)
class Crop:
    size: int | list[int] | None = None  # [h, w] after cropping; must be the input size (null = it)
    padding: int = 4  # zeros added on each side before the random crop

    def __post_init__(self):
        size = self.size
        ok = size is None or isinstance(size, int) or len(size) == 2
        require(ok, "size", "must be an integer or [h, w]", size)
        require(0 <= self.padding <= 1024, "padding", "must be between 0 and 1024", self.padding)


@dataclass(frozen=True)
class Rotate:
    degrees: float = 15.0  # uniform angle in ±degrees

    def __post_init__(self):
        require(0 <= self.degrees <= 180, "degrees", "must be between 0 and 180", self.degrees)


@dataclass(frozen=True)
class Affine:
    degrees: float = 0.0  # uniform angle in ±degrees
    translate: list[float] | None = None  # [fx, fy]: shift up to fx·W and fy·H either way
    scale: list[float] | None = None  # [lo, hi]: zoom factor drawn uniformly

    def __post_init__(self):
        require(0 <= self.degrees <= 180, "degrees", "must be between 0 and 180", self.degrees)
        t = self.translate
        require(
            t is None or (len(t) == 2 and all(0 <= v <= 1 for v in t)),
            "translate",
            "must be [fx, fy] in [0, 1]",
            t,
        )
        s = self.scale
        require(s is None or (len(s) == 2 and 0 < s[0] <= s[1]), "scale", "must be [lo, hi] with 0 < lo ≤ hi", s)


@dataclass(frozen=True)
class Erase:
    p: float = 0.5  # probability that a sample gets a rectangle
    scale: list[float] = field(default_factory=lambda: [0.02, 0.33])  # its area as a fraction of the image
    ratio: list[float] = field(default_factory=lambda: [0.3, 3.3])  # its aspect ratio h/w (log-uniform)
    value: float = 0.0  # what it is filled with

    def __post_init__(self):
        require(0 <= self.p <= 1, "p", "must be in [0, 1]", self.p)
        s, r = self.scale, self.ratio
        require(len(s) == 2 and 0 < s[0] <= s[1] <= 1, "scale", "must be [lo, hi] with 0 < lo ≤ hi ≤ 1", s)
        require(len(r) == 2 and 0 < r[0] <= r[1], "ratio", "must be [lo, hi] with 0 < lo ≤ hi", r)


@dataclass(frozen=True)
class Op:
    params: type  # the parameter dataclass
    main: str | None  # the parameter a bare value sets ({rotate: 15})
    make: Callable[[Any, tuple[int, int, int]], Augment]


OPS: Registry[Op] = Registry("augmentation")


# ----------------------------------------------------------------------------------------------- parsing
def parse_augment(specs: list[Any] | None) -> list[tuple[str, Any]]:
    """Check the `data.augment` list: [(name, params dataclass)], or a ConfigError naming the entry."""
    out = []
    for i, spec in enumerate(specs or []):
        path = f"data.augment[{i}]"
        if isinstance(spec, str):
            name, raw = spec, None
        elif isinstance(spec, dict) and len(spec) == 1:
            ((name, raw),) = spec.items()
        else:
            raise ConfigError(f"expected a name or {{name: params}}, got {describe(spec)}", path=path)
        if name not in OPS:
            raise ConfigError(OPS.unknown(name), path=path)
        op = OPS[name]
        if raw is not None and not isinstance(raw, dict):
            if op.main is None:
                raise ConfigError(f"{name} needs a mapping of parameters, got {describe(raw)}", path=path)
            raw = {op.main: raw}
        out.append((name, parse(op.params, raw, f"{path}.{name}")))
    return out


def check_augment(specs: list[Any] | None, input_shape: tuple[int, ...]) -> None:
    """Augmentation needs images (C, H, W), and a crop must come back to the input size."""
    ops = parse_augment(specs)
    if ops and len(input_shape) != 3:
        raise ConfigError(f"augmentation needs images, this data set gives vectors {input_shape}", path="data.augment")
    for i, (name, params) in enumerate(ops):
        if name == "crop" and params.size is not None:
            size = [params.size] * 2 if isinstance(params.size, int) else list(params.size)
            if size != list(input_shape[1:]):
                raise ConfigError(
                    f"crop size {size[0]}×{size[-1]} must equal the input size {input_shape[1]}×{input_shape[2]}"
                    " (it pads, then crops back to the input size)",
                    path=f"data.augment[{i}].crop.size",
                )


def make_augment(specs: list[Any] | None, input_shape: tuple[int, ...]) -> Augment | None:
    """The batch transform for `data.augment` (None without augmentation): `augment(x, generator) -> x`.

    `x` is a (B, C, H, W) float training batch on any device and `generator` a torch.Generator on that
    device; the same generator state gives the same output, so runs stay reproducible per seed.
    """
    import torch

    check_augment(specs, input_shape)
    fns = [OPS[name].make(params, input_shape) for name, params in parse_augment(specs)]
    if not fns:
        return None

    @torch.no_grad()
    def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        for fn in fns:
            x = fn(x, generator)
        return x

    return augment


# ----------------------------------------------------------------------------------------------- ops
def uniform(n: int, lo: float, hi: float, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """n draws from U(lo, hi) on x's device, in x's dtype."""
    import torch

    return lo + (hi - lo) * torch.rand(n, device=x.device, generator=g, dtype=x.dtype)


def coin(n: int, p: float, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """(n, 1, 1, 1) booleans, True with probability p."""
    import torch

    return (torch.rand(n, device=x.device, generator=g) < p).view(n, 1, 1, 1)


def make_flip(dim: int) -> Callable[[Flip, tuple[int, int, int]], Augment]:
    def make(params: Flip, shape: tuple[int, int, int]) -> Augment:
        import torch
        from torchvision.transforms.v2 import functional as TF

        kernel = TF.horizontal_flip if dim == -1 else TF.vertical_flip

        def flip(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
            return torch.where(coin(len(x), params.p, x, g), kernel(x), x)

        return flip

    return make


def make_crop(params: Crop, shape: tuple[int, int, int]) -> Augment:
    """Pad by `padding` on each side, then take an input-sized window at a random offset per sample."""
    import torch
    from torchvision.transforms.v2 import functional as TF

    pad = params.padding

    def crop(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        n, c, h, w = x.shape
        padded = TF.pad(x, [pad])  # zeros all round: (n, c, h + 2·pad, w + 2·pad)
        dy, dx = (torch.randint(0, 2 * pad + 1, (2, n), device=x.device, generator=g)).unbind(0)
        rows = (dy[:, None] + torch.arange(h, device=x.device)).view(n, 1, h, 1).expand(n, c, h, w + 2 * pad)
        cols = (dx[:, None] + torch.arange(w, device=x.device)).view(n, 1, 1, w).expand(n, c, h, w)
        return padded.gather(2, rows).gather(3, cols)

    return crop


def make_affine(params: Affine, shape: tuple[int, int, int]) -> Augment:
    """Per-sample rotation about the centre, shift and zoom, sampled bilinearly (zeros outside)."""
    import torch
    import torch.nn.functional as F

    _, h, w = shape
    rad = math.radians(params.degrees)
    fx, fy = params.translate or (0.0, 0.0)
    lo, hi = params.scale or (1.0, 1.0)

    def affine(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        n = len(x)
        a = uniform(n, -rad, rad, x, g)
        tx = uniform(n, -2 * fx, 2 * fx, x, g)  # in grid units, where 2 is the full width
        ty = uniform(n, -2 * fy, 2 * fy, x, g)
        s = uniform(n, lo, hi, x, g)
        cos, sin = a.cos() / s, a.sin() / s
        # output → input coordinates (what affine_grid wants): undo the shift, then the rotation and zoom;
        # the h/w factors keep the rotation a rotation in pixels on non-square images
        theta = torch.stack(
            [
                torch.stack([cos, sin * h / w, -(cos * tx + sin * h / w * ty)], 1),
                torch.stack([-sin * w / h, cos, -(-sin * w / h * tx + cos * ty)], 1),
            ],
            1,
        )
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    return affine


def make_rotate(params: Rotate, shape: tuple[int, int, int]) -> Augment:
    return make_affine(Affine(degrees=params.degrees), shape)


def make_erase(params: Erase, shape: tuple[int, int, int]) -> Augment:
    """RandomErasing per sample; the box is clamped to the image instead of redrawn until it fits."""
    import torch

    _, h, w = shape
    (s_lo, s_hi), (r_lo, r_hi) = params.scale, params.ratio

    def erase(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        n = len(x)
        area = uniform(n, s_lo, s_hi, x, g) * (h * w)
        ratio = uniform(n, math.log(r_lo), math.log(r_hi), x, g).exp()
        eh = (area * ratio).sqrt().round().clamp(1, h)
        ew = (area / ratio).sqrt().round().clamp(1, w)
        top = (uniform(n, 0, 1, x, g) * (h - eh + 1)).floor()
        left = (uniform(n, 0, 1, x, g) * (w - ew + 1)).floor()
        r = torch.arange(h, device=x.device, dtype=x.dtype)
        c = torch.arange(w, device=x.device, dtype=x.dtype)
        in_rows = (r >= top[:, None]) & (r < (top + eh)[:, None])  # (n, h)
        in_cols = (c >= left[:, None]) & (c < (left + ew)[:, None])  # (n, w)
        box = in_rows[:, None, :, None] & in_cols[:, None, None, :] & coin(n, params.p, x, g)
        return x.masked_fill(box, params.value)

    return erase


OPS.add("hflip", Op(Flip, "p", make_flip(-1)))
OPS.add("vflip", Op(Flip, "p", make_flip(-2)))
OPS.add("crop", Op(Crop, "padding", make_crop))
OPS.add("rotate", Op(Rotate, "degrees", make_rotate))
OPS.add("affine", Op(Affine, None, make_affine))
OPS.add("erase", Op(Erase, "p", make_erase))
