"""The course book's own interface — `FlowersDataset`, `CnnRegModel(...).exec_all(...)` — on regbench's engine.

Paste the book's chapter cells after one import line:

    from regbench.book import *

    fd = FlowersDataset([96, 96], [96, 96, 3])
    fm1 = CnnRegModel('flowers_model_1', fd, [30, 10])
    fm1.exec_all(epoch_count=10, report=2, show_params=True)

The printout is the book's, line for line (Korean sample lines by default; `set_lang("en")` for English),
and every `train` writes an ordinary run directory `runs/<model name>-<time>/` (`set_out(...)` moves it)
that `regbench compare` and `regbench report` read. Training is `regbench.train`'s: nothing here trains.

- `train(...)` trains and tests (the run directory is complete) but prints, as the book, only up to
  `Model … train ended in … secs:`. `test()`, `visualize(num)` and `show_param_dist()` print from the
  finished run — its saved model, its test split — and add their lines to the run's `log.txt`.
  `exec_all` is the book's: `train`, `test`, `visualize(show_cnt)` and (CnnRegModel) `show_param_dist()`.
- In Jupyter the lines stream as the epochs finish (no progress bar: it is drawn only on a terminal), and
  the figures (the shown samples, the parameter histogram, `show_maps`' kernels and maps) appear inline;
  elsewhere the histogram is only saved (`params_hist.png` in the run directory).
- Where regbench differs from the book's numpy code, it is the README's "Where regbench differs from the
  book"; here in addition: the shown samples come from the test split (the book draws validation samples),
  and `test()` before any `train` is an error (the book would test the untrained parameters).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import api
from .api import Config, ConfigError, DataError, RegbenchError, Run
from .core import console

__all__ = [
    "AdamModel",
    "CnnBasicModel",
    "CnnRegModel",
    "FlowersDataset",
    "MlpModel",
    "Office31Dataset",
    "RegbenchDataset",
    "set_lang",
    "set_out",
]


# ----------------------------------------------------------------------------------------------- settings
@dataclasses.dataclass
class Settings:
    lang: str = "ko"  # the book's Korean sample lines; en: `estimated distribution … => estimate … : answer …`
    out: str | Path = "runs"  # parent folder of the run directories
    seed: int = 1234  # the book's np.random.seed(1234)


SETTINGS = Settings()


def set_lang(lang: str) -> None:
    """The language of the printed sample lines and captions for every model: `ko` (the book's) or `en`."""
    SETTINGS.lang = api.check_lang(lang)


def set_out(path: str | Path) -> None:
    """The folder the run directories go to (default `runs`, relative to the working directory)."""
    SETTINGS.out = path


def relabel(e: ConfigError, source: str, names: dict[str, str]) -> ConfigError:
    """A config error in the book's words: `CnnRegModel('m1'): hconfigs[2]: …` rather than `model.layers[2]`."""
    path = e.path
    for key, word in names.items():
        if path and (path == key or path.startswith(key + ".") or path.startswith(key + "[")):
            path = word + path[len(key) :]
            break
    return ConfigError(e.detail, source=source, path=path)


# ----------------------------------------------------------------------------------------------- Jupyter
def in_notebook() -> bool:
    """True inside a Jupyter kernel (an IPython shell with a kernel), where figures are shown inline."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return shell is not None and getattr(shell, "kernel", None) is not None


def show_png(png: bytes) -> None:
    """Display a PNG inline in Jupyter (after the text printed so far); nothing elsewhere."""
    if in_notebook():
        from IPython.display import Image, display

        sys.stdout.flush()
        display(Image(data=png, format="png"))


def figure_png(draw, width: float, height: float) -> bytes:
    """Draw on a bare Agg figure (no pyplot, so the caller's backend is left alone) and return its PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    draw(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    return buf.getvalue()


def images_horz(images: list[np.ndarray]) -> bytes:
    """The book's draw_images_horz: images side by side, without axes (H×W grey or H×W×3, any range)."""

    def draw(fig):
        axes = fig.subplots(1, len(images), squeeze=False)[0]
        for ax, img in zip(axes, images, strict=True):
            img = np.asarray(img, dtype=np.float64)
            lo, hi = float(img.min()), float(img.max())
            img = (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)
            ax.imshow(img, cmap="gray" if img.ndim == 2 else None)
            ax.axis("off")

    return figure_png(draw, min(2.0 * len(images), 12.0), 2.0)


# ----------------------------------------------------------------------------------------------- data sets
class RegbenchDataset:
    """Any regbench data set the book's way: `RegbenchDataset("digits")`,
    `RegbenchDataset("mnist", limit={"train": 2000})`, `RegbenchDataset({"name": "synthetic", "shape": [24, 24, 3]})`.

    The data are loaded, split (the book's 0.8 / 0.05 ratios) and checked here, as the book's constructors
    do; models train on the same split. `input_shape` is the book's: `[-1]` gives flat vectors (an MLP's
    input; conv layers then refuse it, as the book's assert does), `[H, W, C]` images; None: the set's own.

    Attributes as the book's Dataset: `name`, `mode` (select, or dual_select for two heads), `target_names`
    (a list per head for several), `input_shape`, `output_shape`, `train_count`; plus `data`, the regbench
    data config the models' runs use.
    """

    def __init__(self, data: str | dict[str, Any], input_shape: list[int] | None = None, **keys: Any):
        raw = {"name": data} if isinstance(data, str) else dict(data)
        raw.update(keys)
        self._setup(raw, input_shape, type(self).__name__)

    def _setup(self, data: dict[str, Any], input_shape: list[int] | None, label: str) -> None:
        try:
            cfg = api.load_config({"name": "dataset", "data": data, "model": {"layers": []}})
        except ConfigError as e:  # `FlowersDataset: resolution: …`, in the constructor's words
            path = e.path[len("data.") :] if e.path and e.path.startswith("data.") else e.path
            raise ConfigError(e.detail, source=label, path=path) from None
        ds = api.load_dataset(cfg)  # DataError (files missing, unreadable) now, as the book's constructor fails
        self.data: dict[str, Any] = cfg.to_dict()["data"]
        self.info: api.DataInfo = ds.info
        self.name = cfg.data.name
        heads = self.info.heads
        self.mode = "select" if len(heads) == 1 else "dual_select" if len(heads) == 2 else "multi_select"
        self.target_names = heads[0].classes if len(heads) == 1 else [h.classes for h in heads]
        self.counts = {s: ds.size(s) for s in ("train", "val", "test")}
        self.test_x, self.test_y = ds.x["test"], ds.y["test"]  # what visualize shows (normalized as trained)
        shape = self.info.input_shape
        self.image_shape = [shape[1], shape[2], shape[0]] if len(shape) == 3 else None
        self.flat = check_input_shape(input_shape, shape, label)
        self.input_shape = [int(np.prod(shape))] if self.flat else (self.image_shape or list(shape))
        self.output_shape = [sum(self.info.head_sizes)]

    @property
    def train_count(self) -> int:
        return self.counts["train"]

    def __str__(self) -> str:
        c = self.counts
        return f"{self.name}({self.mode}, {c['train']}+{c['test']}+{c['val']})"

    __repr__ = __str__


def check_input_shape(input_shape: list[int] | None, shape: tuple[int, ...], label: str) -> bool:
    """True for the book's flat input (`[-1]`); False for images `[H, W, C]` (or None: the set's own)."""
    if input_shape is None:
        return len(shape) == 1
    given = [int(v) for v in input_shape]
    size = int(np.prod(shape))
    if given in ([-1], [size]):
        return True
    image = [shape[1], shape[2], shape[0]] if len(shape) == 3 else None
    if given == image:
        return False
    allowed = "[-1] (flat vectors)" + (f" or {image} (images, H × W × C)" if image else "")
    raise ConfigError(f"expected {allowed}, got {given}", source=label, path="input_shape")


def channels_of(input_shape: list[int] | None) -> int | None:
    """`[h, w, 1]` asks for grey images; anything else keeps the set's colour."""
    return 1 if input_shape is not None and len(input_shape) == 3 and int(input_shape[2]) == 1 else None


def tree_keys(root: str | Path | None, folder: str) -> dict[str, str]:
    """`root` is the book's folder (the image tree itself, e.g. `data/chap05/flowers`); a folder that holds
    regbench's `<folder>/` instead (e.g. `data`) is taken as data.root. None: regbench's default place."""
    if root is None:
        return {}
    if (Path(root) / folder).is_dir():
        return {"root": str(root)}
    return {"path": str(root)}


@contextlib.contextmanager
def files_hint(hint: str):
    """Add how to get the files in the book's terms to a missing-files error (still one line)."""
    try:
        yield
    except DataError as e:
        if ": missing " not in str(e):
            raise
        raise DataError(f"{e}; {hint}") from None


class FlowersDataset(RegbenchDataset):
    """The book's chapter 5 flowers set: `FlowersDataset([96, 96], [96, 96, 3])`.

    `root` is the folder of `<class>/*.jpg` photos (the book's `data/chap05/flowers`); by default regbench's
    `data/flower_photos`, which `regbench data fetch flowers` (or `download=True`) puts there.
    """

    def __init__(
        self,
        resolution: list[int] = [100, 100],  # noqa: B006 (the book's signature)
        input_shape: list[int] = [-1],  # noqa: B006
        root: str | Path | None = None,
        *,
        download: bool = False,
    ):
        data: dict[str, Any] = {"name": "flowers", "resolution": list(resolution), **tree_keys(root, "flower_photos")}
        data["split"] = {"stratify": False}  # the book's shuffle_data: a plain shuffle
        if channels_of(input_shape):
            data["channels"] = 1
        if download:
            data["download"] = True
        with files_hint(
            "FlowersDataset(..., download=True) downloads them; root= takes the book's folder of <class>/*.jpg"
        ):
            self._setup(data, input_shape, "FlowersDataset")


class Office31Dataset(RegbenchDataset):
    """The book's chapter 6 Office-31 set with two heads, domain and object: `Office31Dataset([96, 96], [96, 96, 3])`.

    `root` is the folder of `<domain>/images/<object>/*.jpg` (the book's `data/chap06/office31`); by default
    regbench's `data/office31`.
    """

    def __init__(
        self,
        resolution: list[int] = [100, 100],  # noqa: B006 (the book's signature)
        input_shape: list[int] = [-1],  # noqa: B006
        root: str | Path | None = None,
    ):
        data: dict[str, Any] = {"name": "office31", "resolution": list(resolution), **tree_keys(root, "office31")}
        data["split"] = {"stratify": False}  # the book's shuffle_data: a plain shuffle
        if channels_of(input_shape):
            data["channels"] = 1
        with files_hint("root= takes the book's folder of <domain>/images/<object>/*.jpg (data/chap06/office31)"):
            self._setup(data, input_shape, "Office31Dataset")


# ----------------------------------------------------------------------------------------------- models
CONFIG_WORDS = {  # resolved-config key → the book's argument, for error messages
    "model.layers": "hconfigs",
    "train.epochs": "epoch_count",
    "train.batch_size": "batch_size",
    "train.report": "report",
    "optimizer.lr": "learning_rate",
    "regularizer.l2_decay": "l2_decay",
    "regularizer.l1_decay": "l1_decay",
    "model.init.std": "rand_std",
}


class MlpModel:
    """The book's chapter 5 `MlpModel(name, dataset, hconfigs)`: hidden layers, plain SGD (no Adam).

    Attributes the book reads are honoured: `rand_std` (init std, 0.030) and `use_adam` (AdamModel).
    `run` is the last `train`'s run (a `regbench.Run`: path, metrics, summary, model(), predict(x)).
    """

    def __init__(self, name: str, dataset: RegbenchDataset, hconfigs: list[Any]):
        self.name = name
        self.dataset = dataset
        self.hconfigs = hconfigs
        self.is_training = False
        if not hasattr(self, "rand_std"):
            self.rand_std = 0.030
        if not hasattr(self, "use_adam"):
            self.use_adam = False
        self.show_maps = getattr(self, "show_maps", False)
        self.run: Run | None = None
        self.config()  # the book allocates the layers here, so a layer that does not fit fails now

    def __str__(self) -> str:
        return f"{self.name}/{self.dataset}"

    # -- the regbench experiment these calls stand for
    def regularizer(self) -> dict[str, Any]:
        return {}

    def config(self, epoch_count: int = 10, batch_size: int = 10, learning_rate: float = 0.001, report: int = 0):
        """The resolved regbench config of `train(epoch_count, batch_size, learning_rate, report)`."""
        raw = {
            "name": self.name,
            "seed": SETTINGS.seed,
            "data": self.dataset.data,
            "model": {"layers": self.hconfigs, "init": {"type": "normal", "std": self.rand_std}},
            "optimizer": {"name": "adam" if self.use_adam else "sgd", "lr": learning_rate},
            "regularizer": self.regularizer(),
            "train": {"epochs": epoch_count, "batch_size": batch_size, "report": report, "show": 0},
        }
        label = f"{type(self).__name__}('{self.name}')"
        try:
            cfg = api.load_config(raw)
            if self.dataset.flat:  # the book's flat input: a conv or pool layer cannot take it
                api.check_input(cfg, (self.dataset.input_shape[0],), self.dataset.info.head_sizes)
        except ConfigError as e:
            err = relabel(e, label, CONFIG_WORDS)
            if self.dataset.flat and e.path and e.path.startswith("model.layers") and self.dataset.image_shape:
                err = ConfigError(
                    f"{err.detail} (the data set was made with input_shape=[-1]; give"
                    f" {self.dataset.image_shape} for images)",
                    source=label,
                    path=err.path,
                )
            raise err from None
        return cfg

    # -- the book's calls
    def exec_all(
        self,
        epoch_count: int = 10,
        batch_size: int = 10,
        learning_rate: float = 0.001,
        report: int = 0,
        show_cnt: int = 3,
    ) -> None:
        """The book's exec_all: train, test, and visualize `show_cnt` test samples."""
        self.train(epoch_count, batch_size, learning_rate, report)
        self.test()
        if show_cnt > 0:
            self.visualize(show_cnt)

    def train(self, epoch_count: int = 10, batch_size: int = 10, learning_rate: float = 0.001, report: int = 0) -> None:
        """Train with regbench (and test: the run directory is complete); prints `train started` (when
        report != 0), the epoch line every `report` epochs and `train ended`, as the book."""
        cfg = self.config(epoch_count, batch_size, learning_rate, report)
        self.learning_rate = learning_rate
        self.run = None
        self.run = api.train(cfg, SETTINGS.out, lang=SETTINGS.lang, report_test=False)

    def test(self) -> None:
        """Print `Model … test report: accuracy = …, (… secs)` (and the book's blank line)."""
        run = self.finished()
        acc = run.summary.get("test_acc")
        accs = acc if isinstance(acc, list) else [float("nan") if acc is None else acc]
        self.say(run, [console.test_report(self.name, accs, int(run.summary.get("test_s", 0)))])

    def visualize(self, num: int) -> None:
        """Print `Model … Visualization`, draw `num` test samples (Jupyter) and print their estimated
        distributions, estimates and answers (per head, under the book's captions, for two heads)."""
        run = self.finished()
        cfg = self.resolved(run)
        self.say(run, [console.visualization(self.name)])
        x, y = self.dataset.test_x, self.dataset.test_y
        if len(x) == 0 or num <= 0:
            return
        pick = api.pick_samples(len(x), cfg.seed, num)
        xs, ys = x[pick], y[pick]
        net = run.model()
        if self.show_maps:
            self.draw_maps(net, cfg, xs)
        if in_notebook() and xs.dim() == 4:  # the book's draw_images_horz
            show_png(images_horz([img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0) for img in xs.numpy()]))
        self.say(run, api.sample_lines(net, xs, ys, self.dataset.info, SETTINGS.lang))

    def show_param_dist(self) -> None:
        """The book's CnnRegModel.show_param_dist: the weights' histogram (inline in Jupyter; saved as the run's
        params_hist.png) and `Near 0 parameters = …%(…/…)`."""
        run = self.finished()
        net = run.model()
        file = run.path / "params_hist.png"
        stats = api.param_hist(net, file)
        show_png(file.read_bytes())
        self.say(run, [console.near_zero_line(int(stats["near_zero"]), int(stats["weights"]))])

    # -- helpers
    def finished(self) -> Run:
        if self.run is None:
            raise RegbenchError(f"model '{self.name}' is not trained yet: call train(...) or exec_all(...) first")
        return self.run

    @staticmethod
    def resolved(run: Run) -> Config:
        return api.load_config(run.config)

    @staticmethod
    def say(run: Run, lines: list[str]) -> None:
        """Print as the trainer does (streamed, flushed) and add the lines to the run's log.txt."""
        for line in lines:
            sys.stdout.write(line + "\n")
        sys.stdout.flush()
        api.add_log_lines(run, lines)

    def draw_maps(self, net, cfg: Config, xs: torch.Tensor) -> None:
        """The book's show_maps: the first kernels of every conv layer, then channel 0 of every conv and
        pool layer's output for the shown samples (Jupyter only)."""
        if not in_notebook():
            return
        kernels = [m.weight.detach() for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
        for k in kernels:
            grids = k.reshape(-1, *k.shape[2:])[:5].numpy()
            show_png(images_horz(list(grids)))
        maps: list[torch.Tensor] = []
        hooks = [
            net.body[i].register_forward_hook(lambda _m, _i, out: maps.append(out.detach()))
            for i, layer in enumerate(cfg.model.layers)
            if isinstance(layer, list) and layer[0] in ("conv", "max", "avg")
        ]
        try:
            with torch.no_grad():
                net(xs.float())
        finally:
            for h in hooks:
                h.remove()
        for m in maps:
            if m.dim() == 4:
                show_png(images_horz(list(m[:, 0].numpy())))


class AdamModel(MlpModel):
    """The book's chapter 6 AdamModel: an MlpModel whose `use_adam` (False until set) switches to Adam."""

    def __init__(self, name: str, dataset: RegbenchDataset, hconfigs: list[Any]):
        self.use_adam = False
        super().__init__(name, dataset, hconfigs)


class CnnBasicModel(AdamModel):
    """The book's chapter 7 `CnnBasicModel(name, dataset, hconfigs, show_maps=False)`: the layer list in the
    book's notation (`['conv', {'ksize': 3, 'chn': 6}]`, `['max', {'stride': 2}]`, ints), Adam."""

    def __init__(self, name: str, dataset: RegbenchDataset, hconfigs: list[Any], show_maps: bool = False):
        if isinstance(hconfigs, list) and hconfigs and not isinstance(hconfigs[0], (list, int)):
            hconfigs = [hconfigs]  # the book's: one layer given alone
        self.show_maps = show_maps
        super().__init__(name, dataset, hconfigs)
        self.use_adam = True


class CnnRegModel(CnnBasicModel):
    """The book's chapter 8 `CnnRegModel(name, dataset, hconfigs, show_maps=False, l2_decay=0, l1_decay=0)`:
    L2/L1 decay on weights and kernels as the book applies it (`regularizer.mode: decoupled`), and the
    layers `dropout`, `noise` and `batch_normal`."""

    def __init__(
        self,
        name: str,
        dataset: RegbenchDataset,
        hconfigs: list[Any],
        show_maps: bool = False,
        l2_decay: float = 0,
        l1_decay: float = 0,
    ):
        self.l2_decay = l2_decay
        self.l1_decay = l1_decay
        super().__init__(name, dataset, hconfigs, show_maps)

    def regularizer(self) -> dict[str, Any]:
        return {"l2_decay": self.l2_decay, "l1_decay": self.l1_decay}

    def exec_all(
        self,
        epoch_count: int = 10,
        batch_size: int = 10,
        learning_rate: float = 0.001,
        report: int = 0,
        show_cnt: int = 3,
        show_params: bool = False,
    ) -> None:
        """The book's exec_all, then `show_param_dist()` with `show_params=True`."""
        super().exec_all(epoch_count, batch_size, learning_rate, report, show_cnt)
        if show_params:
            self.show_param_dist()
