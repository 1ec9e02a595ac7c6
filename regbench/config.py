"""The experiment config: typed sections with the book's defaults, loaded from YAML plus `--set` overrides.

Every key has a default, so a config file states only what differs. `load_config` returns a frozen `Config`
whose `model.layers` is the normalized layer list (every layer as `[type, {all params}]`), which is what
`config.yaml` in a run directory holds.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from .core.cgroups import usable_cores
from .core.errors import ConfigError
from .core.schema import describe, load_yaml, only_when, require, to_plain

Activation = Literal["relu", "sigmoid", "tanh", "leaky_relu", "elu", "gelu", "none"]
InitType = Literal[
    "normal",
    "truncated_normal",  # TF's: values beyond 2 std are redrawn
    "uniform",
    "xavier_normal",
    "xavier_uniform",
    "he_normal",
    "he_uniform",
    "glorot_normal",  # Keras names: glorot_* = xavier_*, random_* = uniform/normal
    "glorot_uniform",
    "random_uniform",
    "random_normal",
]
NORMAL_INITS = ("normal", "truncated_normal", "random_normal")  # the init types that read std and mean
UNIFORM_INITS = ("uniform", "random_uniform")  # and low and high
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


# ----------------------------------------------------------------------------------------------- data
@dataclass(frozen=True)
class Split:
    train: float = 0.8  # book: tr_ratio 0.8 of the shuffled data
    val: float = 0.05  # book: va_ratio 0.05; the rest is the test split
    stratify: bool = True  # every class in proportion in every split; false: the book's plain shuffle

    def __post_init__(self):
        require(0 < self.train < 1, "train", "must be between 0 and 1 (exclusive)", self.train)
        require(0 <= self.val < 1, "val", "must be in [0, 1)", self.val)
        msg = f"train + val must be < 1 to leave a test split (train={self.train})"
        require(self.train + self.val < 1, "val", msg, self.val)


@dataclass(frozen=True)
class Limit:
    train: int | None = None  # cap on samples per split (null = all); stratified, so every class stays
    val: int | None = None
    test: int | None = None

    def __post_init__(self):
        for name in ("train", "val", "test"):
            v = getattr(self, name)
            require(v is None or v >= 1, name, "must be ≥ 1 or null", v)


Normalize = Literal["none", "unit", "standardize", "center"]


@dataclass(frozen=True)
class DataConfig:
    name: str = "digits"  # a registered data set; `regbench datasets` lists them
    root: str = "data"  # folder of file-based data sets (`folder`: the image tree itself)
    seed: int = 0  # shuffle/split seed, fixed so runs that differ only in `seed` share one test set
    split: Split | Literal["official"] = field(default_factory=Split)  # ratios, or official (its test split)
    limit: Limit = field(default_factory=Limit)
    normalize: Normalize | None = None  # none | unit | standardize | center (null = the set's default)
    augment: list[Any] | None = None  # train split only, e.g. [hflip, {crop: {size: 32, padding: 4}}]
    # synthetic only (null = the data set's default)
    shape: list[int] | None = None  # H × W × C in the book's order; synthetic default [8, 8, 1]
    classes: int | list[int] | None = None  # class count, or one per output head ([3, 31]); default 10
    count: int | None = None  # number of samples; synthetic default 1000
    # file-based sets only (null = the data set's default)
    path: str | None = None  # npz: the .npz file; flowers, office31: the image tree (default: under root)
    resolution: list[int] | None = None  # image sets: [h, w] to resize to; image folders default [96, 96]
    channels: int | None = None  # image sets: force 1 (grey) or 3 (RGB); default: the set's own
    download: bool | None = None  # torchvision sets and flowers: fetch missing files (null = false)

    def __post_init__(self):
        res = self.resolution
        ok = res is None or (len(res) == 2 and all(1 <= v <= 4096 for v in res))
        require(ok, "resolution", "must be [h, w] with sizes 1–4096", res)
        require(self.channels in (None, 1, 3), "channels", "must be 1 or 3", self.channels)
        require(self.path is None or self.path.strip() != "", "path", "must be a path", self.path)


# ----------------------------------------------------------------------------------------------- model
@dataclass(frozen=True)
class InitConfig:
    type: InitType = "normal"  # book: normal(0, init_rand_std) for weights and kernels
    std: float = only_when(0.03, "type", *NORMAL_INITS)  # book: init_rand_std = 0.030 (normal, truncated_normal)
    mean: float = only_when(0.0, "type", *NORMAL_INITS)  # normal, truncated_normal
    low: float = only_when(-0.05, "type", *UNIFORM_INITS)  # uniform (Keras RandomUniform's default range)
    high: float = only_when(0.05, "type", *UNIFORM_INITS)
    bias: float = 0.0  # constant for biases (book 0; the CIFAR workshop uses 0.1)

    def __post_init__(self):
        require(self.std >= 0, "std", "must be ≥ 0", self.std)
        require(self.low < self.high, "high", f"must be > low ({self.low})", self.high)


@dataclass(frozen=True)
class ModelConfig:
    layers: list[Any] = field(default_factory=lambda: [30, 10])  # book hconfigs; output layer is added
    init: InitConfig = field(default_factory=InitConfig)  # a layer's own `init` overrides it
    activation: Activation = "relu"  # book: default actfunc of full and conv layers


# ----------------------------------------------------------------------------------------------- training
@dataclass(frozen=True)
class RegularizerConfig:
    l2_decay: float = 0.0  # book: CnnRegModel(l2_decay=...); acts on weights and kernels only
    l1_decay: float = 0.0  # book: CnnRegModel(l1_decay=...)
    # decoupled: the book's w -= lr·(l2·w + l1·sign w) each step;
    # penalty: l2/2·Σw² + l1·Σ|w| added to the loss (Keras, "Deep Learning from Scratch")
    mode: Literal["decoupled", "penalty"] = "decoupled"

    def __post_init__(self):
        require(self.l2_decay >= 0, "l2_decay", "must be ≥ 0", self.l2_decay)
        require(self.l1_decay >= 0, "l1_decay", "must be ≥ 0", self.l1_decay)


@dataclass(frozen=True)
class OptimizerConfig:
    # sgd | momentum | nesterov | adagrad | rmsprop | adadelta | adam | adamw | adamax | nadam
    name: str = "adam"  # book: Adam
    lr: float = 0.001  # book: learning_rate=0.001
    momentum: float = 0.9  # momentum, nesterov: decay of the velocity
    beta1: float = 0.9  # adam family: book ro_1
    beta2: float = 0.999  # adam family: book ro_2
    eps: float | None = None  # null = the optimizer's usual value (adam 1e-8 as the book, adagrad 1e-10)
    alpha: float = 0.99  # rmsprop: decay of the squared-gradient average (DLFS: 0.99)
    rho: float = 0.9  # adadelta: decay of its running averages
    weight_decay: float = 0.0  # the optimizer's own decay (adamw: decoupled; others: added to the gradient)
    schedule: Literal["none", "step", "exponential", "cosine"] = "none"  # learning-rate schedule
    warmup: float = 0.0  # epochs of linear warm-up (from lr/100 to lr) before the schedule
    step_size: int = 10  # step: epochs between multiplications by gamma
    gamma: float | None = None  # step: factor every step_size epochs (0.1); exponential: per epoch (0.95)
    min_lr: float = 0.0  # cosine: the value reached at the last step

    def __post_init__(self):
        require(self.lr > 0, "lr", "must be > 0", self.lr)
        for name in ("momentum", "beta1", "beta2", "alpha", "rho"):
            v = getattr(self, name)
            require(0 <= v < 1, name, "must be in [0, 1)", v)
        require(self.eps is None or self.eps > 0, "eps", "must be > 0 or null", self.eps)
        require(self.weight_decay >= 0, "weight_decay", "must be ≥ 0", self.weight_decay)
        require(self.warmup >= 0, "warmup", "must be ≥ 0 epochs", self.warmup)
        require(self.step_size >= 1, "step_size", "must be ≥ 1 epoch", self.step_size)
        require(self.gamma is None or 0 < self.gamma <= 1, "gamma", "must be in (0, 1]", self.gamma)
        require(0 <= self.min_lr <= self.lr, "min_lr", f"must be in [0, lr={self.lr}]", self.min_lr)


@dataclass(frozen=True)
class EarlyStop:
    patience: int = 5  # epochs without improvement before stopping
    metric: Literal["val_acc", "val_loss"] = "val_acc"  # on the validation split (first head)
    min_delta: float = 0.0  # an improvement smaller than this does not count

    def __post_init__(self):
        require(self.patience >= 1, "patience", "must be ≥ 1", self.patience)
        require(self.min_delta >= 0, "min_delta", "must be ≥ 0", self.min_delta)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10  # book: epoch_count=10
    batch_size: int = 10  # book: batch_size=10
    report: int = 1  # print the epoch line every N epochs; 0 = only the end lines (book exec_all: 0)
    show: int = 3  # book: show_cnt=3 test samples printed after the test report
    show_params: bool = False  # book: near-zero count plus mean/std of the weights, and the histogram
    device: str = "auto"  # auto | cpu | cuda | cuda:N (auto = cuda when available)
    drop_last: bool = True  # book: batch_count = train_count // batch_size, the remainder is skipped
    threads: int | None = None  # CPU threads for torch (null = OMP_NUM_THREADS, else the cores the process may use)
    iterations: int | None = None  # train this many steps instead of `epochs` (last epoch may be partial)
    log_every: int = 0  # write the loss of steps 0, K, 2K, … to steps.jsonl; 0 = off
    eval_train: bool = False  # also evaluate the whole train split in evaluation mode every epoch
    early_stop: EarlyStop | None = None  # e.g. {patience: 5, metric: val_acc}; null = all epochs
    test_on: Literal["last", "best"] = "last"  # test the last epoch's weights or the best val epoch's
    ensemble: int = 1  # N members (seeds seed, seed+1, …); tests the averaged softmax of the first k
    clip_grad_norm: float | None = None  # clip the global gradient norm to this value every step
    amp: Literal["none", "bf16"] = "none"  # bf16: forward and loss under torch.autocast (for CUDA; CPU works too)
    # the fast path, each part on by default (off: the plain path, for checking it or for huge data sets)
    resident: bool = True  # data live on the training device; false: in host memory, each batch copied over
    channels_last: bool = True  # image models run in the NHWC memory format (CPU and CUDA)
    fused: bool = True  # fused optimizer kernels where torch has them (else foreach)
    relu_after_max: bool = True  # conv → relu → max runs as conv → max → relu: same values and gradients
    reuse_memory: bool = True  # glibc malloc keeps freed memory for the next step (no page faults per step);
    # process-wide from the first run that asks for it
    checkpoint_every: float = 0.5  # seconds: checkpoint after an epoch once this long since the last one
    # (and after the last epoch); 0 = after every epoch. Short epochs then cost no checkpoint each

    def __post_init__(self):
        require(1 <= self.epochs <= 1_000_000, "epochs", "must be between 1 and 1000000", self.epochs)
        require(1 <= self.batch_size <= 1_000_000, "batch_size", "must be between 1 and 1000000", self.batch_size)
        require(self.report >= 0, "report", "must be ≥ 0", self.report)
        require(self.show >= 0, "show", "must be ≥ 0", self.show)
        ok = re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device) is not None
        require(ok, "device", "must be auto, cpu, cuda or cuda:N", self.device)
        require(self.threads is None or self.threads >= 1, "threads", "must be ≥ 1 or null", self.threads)
        cores = usable_cores()
        require(
            self.threads is None or self.threads <= cores,
            "threads",
            f"must be at most the {cores} CPU cores this process may use (or null: the free ones)",
            self.threads,
        )
        require(self.iterations is None or self.iterations >= 1, "iterations", "must be ≥ 1 or null", self.iterations)
        require(self.log_every >= 0, "log_every", "must be ≥ 0", self.log_every)
        require(1 <= self.ensemble <= 1000, "ensemble", "must be between 1 and 1000", self.ensemble)
        clip = self.clip_grad_norm
        require(clip is None or clip > 0, "clip_grad_norm", "must be > 0 or null", clip)
        require(self.checkpoint_every >= 0, "checkpoint_every", "must be ≥ 0 seconds", self.checkpoint_every)


# the train: switches of the fast path
# keys that change what is printed, not what is trained: runs differing only in these train the same model
PRINT_ONLY = ("train.report", "train.show", "train.show_params")
FAST_PATH = ("resident", "channels_last", "fused", "relu_after_max", "reuse_memory")


@dataclass(frozen=True)
class Config:
    name: str = "run"  # the run directory's prefix (default: the config file's name)
    seed: int = 1234  # seeds init, batch order and dropout/noise draws; same seed on CPU → same metrics
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    regularizer: RegularizerConfig = field(default_factory=RegularizerConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self):
        require(
            NAME_RE.fullmatch(self.name) is not None,
            "name",
            "must be letters, digits, '.', '_' or '-' (no path separators), at most 100 characters",
            self.name,
        )
        require(0 <= self.seed < 2**63, "seed", "must be between 0 and 2**63-1", self.seed)

    def to_dict(self) -> dict[str, Any]:
        """The plain, YAML-ready form (what `config.yaml` holds)."""
        return to_plain(self)


# ----------------------------------------------------------------------------------------------- loading
# a dotted key, with list indices: train.epochs, model.layers[2].keep_prob, model.layers[1].layers[0].chn
KEY_RE = re.compile(r"[A-Za-z_]\w*(\[\d+\])*(\.[A-Za-z_]\w*(\[\d+\])*)*")


def key_parts(key: str) -> list[str | int]:
    """`model.layers[2].keep_prob` → ["model", "layers", 2, "keep_prob"]."""
    return [int(p[1:-1]) if p.startswith("[") else p for p in re.findall(r"\[\d+\]|[^.\[\]]+", key)]


def key_text(parts: list[str | int]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts).lstrip(".")


def is_layer_entry(node: Any) -> bool:
    """`[kind]` or `[kind, {params}]`: a key below it names one of the layer's parameters."""
    return isinstance(node, list) and 1 <= len(node) <= 2 and isinstance(node[0], str)


def parse_override(text: str) -> tuple[str, Any]:
    """`train.epochs=3` → ("train.epochs", 3); the value is parsed as YAML."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    label = f"--set {text}" if len(text) <= 80 else f"--set {text[:60]}..."  # never quote a huge value whole
    if not sep or not key or not KEY_RE.fullmatch(key):
        raise ConfigError("expected KEY.PATH=VALUE, e.g. train.epochs=3 or model.layers[2].keep_prob=0.8", source=label)
    return key, load_yaml(raw, source=label) if raw.strip() else None


def apply_overrides(raw: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Set each key in a copy of the raw config dict. Missing mappings on the way are created; `[i]` picks
    entry i of a list (which must exist); a key below a layer entry `[kind, {params}]` sets a parameter."""
    import copy

    out = copy.deepcopy(raw)
    for key, value in overrides.items():
        parts, node = key_parts(key), out
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if isinstance(part, int):
                if not isinstance(node, list) or part >= len(node):
                    size = {list: f"a list of {len(node) if isinstance(node, list) else 0}", dict: "a mapping"}
                    what = "it is not set" if node is None else f"in {size.get(type(node)) or describe(node)}"
                    raise ConfigError(f"no entry [{part}]: {what}", source=f"--set {key}", path=key_text(parts[:i]))
                if last:
                    node[part] = value
                    continue
                if isinstance(node[part], int) and parts[i - 1] == "layers" and isinstance(parts[i + 1], str):
                    node[part] = ["full", {"width": node[part]}]  # a bare int is a full layer of that width
                node = node[part]
                continue
            if is_layer_entry(node):
                if len(node) == 1:
                    node.append({})
                node = node[1]
            if not isinstance(node, dict):
                raise ConfigError(
                    f"cannot set a key inside {describe(node)}", source=f"--set {key}", path=key_text(parts[:i])
                )
            if last:
                node[part] = value
            else:
                if node.get(part) is None and isinstance(parts[i + 1], str):
                    node[part] = {}
                node = node.get(part)
    return out


def with_defaults(raw: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """`raw` with the default value filled in where an override indexes into a list the file leaves out
    (`model.layers[0]=20` with the book's default layers [30, 10])."""
    missing = {}
    for key in overrides:
        parts = key_parts(key)
        head = next((i for i, p in enumerate(parts) if isinstance(p, int)), None)
        if head is not None and head > 0 and get_key(raw, key_text(parts[:head])) is None:
            missing[key_text(parts[:head])] = get_key(Config().to_dict(), key_text(parts[:head]))
    return apply_overrides(raw, missing) if missing else raw


def get_key(data: Any, key: str) -> Any:
    """The value at `key` (`a.b.c`; `model.layers[2].keep_prob` indexes lists and reads a layer entry's
    parameter) in nested mappings; None when any part is missing."""
    node = data
    for part in key_parts(key):
        if isinstance(part, int):
            node = node[part] if isinstance(node, list) and part < len(node) else None
            continue
        if is_layer_entry(node):
            node = node[1] if len(node) == 2 else {}
        node = node.get(part) if isinstance(node, dict) else None
    return node


def override_at(path: str | None, keys: Iterable[str]) -> str | None:
    """Which of the override `keys` an error at key `path` is about: the key itself, one inside it, or the
    one it lies inside (None if none)."""
    if not path:
        return None
    for key in keys:
        if key == path or key.startswith((path + ".", path + "[")) or path.startswith((key + ".", key + "[")):
            return key
    return None
