"""The book's max pool (window = stride, no padding) on a CPU, faster than torch's CPU max-pool kernels
where those are slow, with their values, argmax indices and gradients, ties included.

torch's CPU kernels visit one output position at a time; on NCHW maps, and on NHWC maps with fewer channels
than a vector register holds (the book's flowers CNN has 6), that costs several times what the arithmetic
does. Here the maximum comes from whole-map elementwise operations instead:

- without gradients (evaluation): the elementwise maximum of the window's k×k strided slices;
- with gradients: that maximum plus the argmax indices torch's own `max_pool2d_with_indices_backward`
  takes, built with the kernel's rule (the first maximum in row-major window order), so the backward is
  torch's. NCHW maps take the maximum over the strided slices (`max_pool_nchw`); NHWC maps with few
  channels and 2×2 windows (the book's) go across each window's two columns and then its two rows, the
  second pass over whole image rows of the NHWC memory (`max_pool_nhwc`).

Elsewhere `MaxPool` is nn.MaxPool2d: on CUDA, for 1×1 windows, in evaluation for NHWC maps with ≥ 16
channels, and in training for small maps, 3-D inputs, other layouts, and NHWC maps with 4 or ≥ 8 channels,
other windows, odd sizes or more than 2**24 elements per channel (where these passes measured slower than
the kernel, or do not apply). Equal values, two caveats: a tie of -0.0 and +0.0 may keep the other zero's
sign than the kernel, and in a window holding a NaN the gradient may go to another element (the loss is
NaN then and a run stops as diverged).

`AvgPool` (the book's `avg` layer) is nn.AvgPool2d whose backward gets its gradient in its output's NHWC
format on a CPU, where torch's avg-pool backward is slow with another.
"""

from __future__ import annotations

import functools

import torch
from torch import nn

NCHW_MIN_POSITIONS = 64  # pooled positions per map from which the NCHW slices beat the kernel in training
NHWC_MIN_POSITIONS = 2048  # ... and the NHWC passes (on smaller maps the kernel's per-call cost is lower)


class MaxPool(nn.MaxPool2d):
    """nn.MaxPool2d with window = stride and no padding (the book's `max` layer), computed on a CPU from
    whole-map elementwise operations where that is faster than torch's kernel; see the module docstring.

    Measured on 2 CPU cores (training, forward and backward): NCHW maps 2× faster than the kernel, the
    flowers CNN's first pool (a 6-channel 96×96 NHWC map) 2.2× (290 against 640 µs); evaluation 3–10×."""

    def __init__(self, window: int | tuple[int, int]):
        super().__init__(window, window)
        kh, kw = (window, window) if isinstance(window, int) else window
        self.window = None if (kh, kw) == (1, 1) else (kh, kw)  # a 1×1 slice would be a view of the input

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.window is None or x.device.type != "cpu":
            return super().forward(x)
        kh, kw = self.window
        nhwc = (  # dense NHWC memory, batch outermost (as torch's kernel decides its output's layout)
            x.dim() == 4
            and x.is_contiguous(memory_format=torch.channels_last)
            and not x.is_contiguous()
            and x.stride(0) == x.shape[1] * x.shape[2] * x.shape[3]
        )
        if not (x.requires_grad and torch.is_grad_enabled()):
            if nhwc and x.shape[1] >= 16:
                return super().forward(x)  # torch's NHWC kernel vectorizes over ≥ 16 channels
            return functools.reduce(torch.maximum, window_slices(x, kh, kw))
        if x.dim() != 4:
            return super().forward(x)
        _, c, h, w = x.shape
        positions = (h // kh) * (w // kw)
        if x.is_contiguous() and positions >= NCHW_MIN_POSITIONS:
            return IndexedMaxPool.apply(x, kh, kw, False)
        few = c < 8 and c != 4  # torch's NHWC kernel vectorizes over channels: fast with 4, 8 and more
        fits = (kh, kw) == (2, 2) and h % 2 == w % 2 == 0 and h * w <= 2**24  # indices exact in float32
        if nhwc and few and fits and positions >= NHWC_MIN_POSITIONS:
            return IndexedMaxPool.apply(x, kh, kw, True)
        return super().forward(x)


class AvgPool(nn.AvgPool2d):
    """nn.AvgPool2d with window = stride and no padding (the book's `avg` layer) whose backward is given its
    gradient in its output's memory format.

    The layer after an NHWC average pool is often a flatten into the book's (C, H, W) order, whose
    gradient comes back NCHW; torch's CPU avg-pool backward converts such a gradient element by element
    (the flowers CNN's: 106 µs, against 17 µs plus a 5 µs copy to NHWC first)."""

    def __init__(self, window: int | tuple[int, int]):
        super().__init__(window, window)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        if out.device.type != "cpu" or not out.requires_grad:  # CUDA's kernel: left as torch has it
            return out
        if out.dim() == 4 and not out.is_contiguous() and out.is_contiguous(memory_format=torch.channels_last):
            out.register_hook(to_nhwc)
        return out


def to_nhwc(grad: torch.Tensor) -> torch.Tensor:
    try:
        return grad.contiguous(memory_format=torch.channels_last)
    except RuntimeError:  # torch.func's vmap (jacrev) cannot query layouts; the layout only changes speed
        return grad


def window_slices(x: torch.Tensor, kh: int, kw: int) -> list[torch.Tensor]:
    """The k×k strided views of `x` whose elementwise maximum is the kh×kw max pool, in row-major order."""
    h, w = x.shape[-2] // kh * kh, x.shape[-1] // kw * kw
    return [x[..., i:h:kh, j:w:kw] for i in range(kh) for j in range(kw)]


def max_pool_nchw(x: torch.Tensor, kh: int, kw: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Max pool and the kernel's argmax indices (first maximum in row-major window order) of an NCHW map,
    from the window's strided slices."""
    views = window_slices(x, kh, kw)
    out = functools.reduce(torch.maximum, views)
    oh, ow, width = out.shape[-2], out.shape[-1], x.shape[-1]
    offsets = [i * width + j for i in range(kh) for j in range(kw)]
    missed, off = None, None  # windows whose maximum is none of the views so far; the argmax's offset
    for p in range(1, len(views)):
        missed = views[p - 1] != out if missed is None else missed & (views[p - 1] != out)
        step = missed.long() * (offsets[p] - offsets[p - 1])
        off = step if off is None else off + step
    return out, off + window_corners(oh, ow, kh, kw, width, x.device).view(oh, ow)


def max_pool_nhwc(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """2×2 max pool and the kernel's argmax indices of a channels_last map with even height and width and
    at most 2**24 elements per channel (the indices are computed in float32, or x's float64, exactly).

    First across each window's two columns, then across its two rows; the second element wins only when
    strictly greater, which keeps the first maximum in row-major order. The column pass reads the NHWC
    memory in runs of the channels, the row pass in runs of a row of column maxima (ow·c values), which is
    what makes it fast. The comparisons write 0/1 in x's dtype, not bools: torch's CPU comparisons into
    floats are vectorized, into bools 2× slower; the index is then corner + row·w + column."""
    n, c, h, w = x.shape
    oh, ow = h // 2, w // 2
    pairs = x.permute(0, 2, 3, 1).view(n, h, ow, 2, c)  # the NHWC memory, each window's two columns split out
    left, right = pairs[:, :, :, 0], pairs[:, :, :, 1]
    col_max = torch.maximum(left, right).view(n, oh, 2, ow, c)
    right_wins = torch.gt(right, left, out=x.new_empty(left.shape)).view(n, oh, 2, ow, c)
    top, bottom = col_max[:, :, 0], col_max[:, :, 1]
    out = torch.empty((n, c, oh, ow), dtype=x.dtype, device=x.device, memory_format=torch.channels_last)
    torch.maximum(top, bottom, out=out.permute(0, 2, 3, 1))
    row = torch.gt(bottom, top, out=x.new_empty(top.shape))
    col = torch.lerp(right_wins[:, :, 0], right_wins[:, :, 1], row)  # the winning row's column (exact: 0/1 weights)
    index = torch.add(nhwc_corners(oh, ow, c, w, x.device), row, alpha=w).add_(col)
    return out, index.to(torch.int64).permute(0, 3, 1, 2)


@functools.lru_cache(maxsize=8)
def nhwc_corners(oh: int, ow: int, c: int, width: int, device: torch.device) -> torch.Tensor:
    """`window_corners` of a 2×2 pool in float32, repeated over the channels ((oh, ow, c), contiguous, one
    image's worth): adding a broadcast (oh, ow, 1) tensor runs inner loops of c elements, 4× slower."""
    return window_corners(oh, ow, 2, 2, width, device).to(torch.float32).expand(oh, ow, c).contiguous()


@functools.lru_cache(maxsize=32)
def window_corners(oh: int, ow: int, kh: int, kw: int, width: int, device: torch.device) -> torch.Tensor:
    """Flat index (row * width + column) of each window's top-left element, shaped (oh, ow, 1). Cached and
    shared between calls: never modify it in place."""
    rows = torch.arange(oh, device=device).view(-1, 1, 1) * (kh * width)
    return rows + torch.arange(ow, device=device).view(-1, 1) * kw


class IndexedMaxPool(torch.autograd.Function):
    """Max pool whose forward builds the kernel's argmax indices (`max_pool_nhwc` when `nhwc`, whose
    conditions `MaxPool.forward` checks, else `max_pool_nchw`) and whose backward is torch's own
    `max_pool2d_with_indices_backward`."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, kh: int, kw: int, nhwc: bool) -> torch.Tensor:
        out, idx = max_pool_nhwc(x) if nhwc else max_pool_nchw(x, kh, kw)
        ctx.save_for_backward(x, idx)
        ctx.window = [kh, kw]
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, idx = ctx.saved_tensors
        k = ctx.window
        grad_x = torch.ops.aten.max_pool2d_with_indices_backward(grad, x, k, k, [0, 0], [1, 1], False, idx)
        return grad_x, None, None, None
