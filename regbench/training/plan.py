"""Setting up a run: device, threads, data on the device, random streams; what every engine shares."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..config import Config
from ..core.errors import ConfigError
from ..core.resources import default_threads, keep_freed_memory
from ..data import DataInfo, Dataset, load_data
from ..resolve import check_config, check_model_memory

GRAD_NORM_SAMPLES = 4  # gradient norms are measured on at most this many steps per epoch (kept cheap)


@dataclass(frozen=True)
class Plan:
    """The schedule every engine follows, fixed once from the config and the training split's size: batch size,
    steps per epoch, epochs, the run's total steps and which steps sample gradient norms. A run alone and a run
    side by side read the same Plan, so they take the same steps and sample the same ones."""

    batch_size: int
    steps: int  # per full epoch
    total_steps: int  # train.iterations, or steps × epochs
    epochs: int
    n_train: int
    drop_last: bool
    norm_every: int  # gradient norms are sampled on steps 0, norm_every, 2·norm_every, … of each epoch

    @classmethod
    def of(cls, cfg: Config, n_train: int) -> Plan:
        tc = cfg.train
        bs = min(tc.batch_size, n_train)
        steps = n_train // bs if tc.drop_last else math.ceil(n_train / bs)
        total = tc.iterations or steps * tc.epochs
        return cls(bs, steps, total, math.ceil(total / steps), n_train, tc.drop_last, -(-steps // GRAD_NORM_SAMPLES))

    def start(self, epoch: int) -> int:
        """The run's step index at which `epoch` (1-based) begins."""
        return (epoch - 1) * self.steps

    def steps_in(self, epoch: int) -> int:
        """Steps taken in `epoch`: a full epoch, or fewer in the last one of a run given in iterations."""
        return min(self.steps, self.total_steps - self.start(epoch))

    def sampled(self, n_steps: int) -> int:
        """How many steps of an epoch of `n_steps` sample gradient norms."""
        return len(range(0, n_steps, self.norm_every))

    def seen(self, n_steps: int) -> int:
        """Training samples seen in an epoch of `n_steps` (the accuracy's denominator)."""
        return n_steps * self.batch_size if self.drop_last or n_steps < self.steps else self.n_train

    def progress(self, step: int) -> float:
        """The run's step `step` as a fraction of epochs (the learning-rate schedule's clock)."""
        return step / self.steps

    @property
    def total_epochs(self) -> float:
        return self.total_steps / self.steps


def derive_seed(seed: int, purpose: str) -> int:
    """Independent streams for init, batch order, dropout/noise and sample display from one config seed."""
    return int(np.random.SeedSequence([seed, *purpose.encode()]).generate_state(1, np.uint64)[0] >> 1)


def resolve_device(spec: str) -> torch.device:
    """`auto` → cuda when available, else cpu; an unavailable cuda is a config error, not a crash."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(spec)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            msg = f"'{spec}' requested but torch sees no CUDA device (torch {torch.__version__}); use cpu or auto"
            raise ConfigError(msg, path="train.device")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            msg = f"'{spec}' requested but only {torch.cuda.device_count()} CUDA device(s) exist"
            raise ConfigError(msg, path="train.device")
    return dev


@dataclass
class Batches:
    """One split: inputs on the training device (or in host memory when `train.resident` is false), labels
    on the device."""

    x: torch.Tensor
    y: torch.Tensor  # (N, heads) int64

    @property
    def n(self) -> int:
        return int(self.x.shape[0])

    def rows(self, idx: torch.Tensor) -> torch.Tensor:
        """Inputs `idx` (a device tensor) on the device: a copy there, or from host memory."""
        if self.x.device == self.y.device:
            return take(self.x, idx)
        return take(self.x, idx.cpu()).to(self.y.device, non_blocking=True)

    def chunk(self, i: int, j: int) -> torch.Tensor:
        """Inputs i..j on the device."""
        return self.x[i:j].to(self.y.device, non_blocking=True)


def to_device(ds: Dataset, split: str, device: torch.device, channels_last: bool, resident: bool = True) -> Batches:
    x = ds.x[split].to(device) if resident else ds.x[split]
    if channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    if not resident and device.type == "cuda":
        x = x.pin_memory()  # so that the per-batch copies can be asynchronous
    return Batches(x, ds.y[split].to(device))


def take(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Rows `idx` of a resident split. A channels_last image tensor is NHWC in memory, so selecting on that
    view is a plain row copy (advanced indexing on the NCHW view is a strided gather, many times slower);
    the result is channels_last again."""
    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return x.permute(0, 2, 3, 1).index_select(0, idx).permute(0, 3, 1, 2)
    return x.index_select(0, idx)


@dataclass
class Setup:
    """What every member of a run shares: device, data on it, and the data set's description."""

    device: torch.device
    info: DataInfo
    data: Dataset
    channels_last: bool
    splits: dict[str, Batches] = field(default_factory=dict)


def prepare(cfg: Config, threads: int | None = None) -> Setup:
    """Resolve the device, load the data and put every split on the device (no files written yet).

    CPU threads: `train.threads`, else `threads` (a resumed run's own count, so that it continues
    bit-identically), else `core.resources.default_threads()` (OMP_NUM_THREADS, else the cores the process may
    use: never the machine's load, so one command gives the same numbers on a quiet and on a busy machine).
    The count is recorded in the summary: the same config, seed and thread count give identical metrics.
    """
    device = resolve_device(cfg.train.device)
    info, rows = check_config(cfg)
    check_model_memory(rows, cfg, device)
    if device.type == "cpu":
        torch.set_num_threads(cfg.train.threads or threads or default_threads())
    if cfg.train.reuse_memory:
        keep_freed_memory()
    data = load_data(cfg.data)
    if device.type == "cuda":  # the splits go to the GPU: their real size, next to the model's need
        check_model_memory(rows, cfg, device, sum(t.nbytes for d in (data.x, data.y) for t in d.values()))
    n_train = data.size("train")
    if cfg.train.batch_size > n_train:  # one batch larger than the data: clamping it would hide a typo
        raise ConfigError(
            f"{cfg.train.batch_size} is larger than the training split ({n_train} sample{'s' * (n_train != 1)});"
            " lower it, or give the training split more samples (data.limit.train, data.split.train, data.count)",
            path="train.batch_size",
        )
    needs_val = cfg.train.early_stop is not None or cfg.train.test_on == "best"
    if needs_val and data.size("val") == 0:
        key = "train.early_stop" if cfg.train.early_stop is not None else "train.test_on"
        raise ConfigError("needs a validation split; set data.split.val > 0", path=key)
    channels_last = cfg.train.channels_last and len(info.input_shape) == 3 and device.type in ("cpu", "cuda")
    setup = Setup(device, info, data, channels_last)
    resident = cfg.train.resident
    setup.splits = {s: to_device(data, s, device, channels_last, resident) for s in ("train", "val", "test")}
    return setup


def make_gens(seed: int, device: torch.device) -> dict[str, torch.Generator]:
    """The run's own random streams: batch order, dropout/noise draws, augmentation."""
    return {purpose: torch.Generator(device=device).manual_seed(derive_seed(seed, purpose)) for purpose in GEN_PURPOSES}


GEN_PURPOSES = ("order", "layers", "augment")


def match_layouts(opt: torch.optim.Optimizer) -> None:
    """Give each optimizer state tensor its parameter's memory layout. A checkpoint written by a stacked
    member holds NCHW moments; the fused kernels walk a channels_last weight and its moments as flat
    memory, so a layout mismatch would pair the wrong elements without an error."""
    for group in opt.param_groups:
        for p in group["params"]:
            state = opt.state.get(p, {})
            for key, value in state.items():
                if isinstance(value, torch.Tensor) and value.shape == p.shape and value.stride() != p.stride():
                    state[key] = torch.empty_like(p, dtype=value.dtype).copy_(value)


def rng_states(gens: dict[str, torch.Generator]) -> dict[str, Any]:
    """Every random state a run depends on, as plain data and tensors (loadable with weights_only=True)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    states = {f"gen_{k}": g.get_state() for k, g in gens.items()}
    states.update(torch=torch.get_rng_state(), python=random.getstate())
    states["numpy"] = [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss]
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any], gens: dict[str, torch.Generator]) -> None:
    for k, g in gens.items():
        g.set_state(states[f"gen_{k}"])
    torch.set_rng_state(states["torch"])
    random.setstate(tuple(tuple(x) if isinstance(x, list) else x for x in states["python"]))
    kind, keys, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]
