"""Could a run alone give the numbers it gives side by side? Trains one digits CNN seed three ways, in one
process, alternating: the plain model (`Solo`, what a run alone uses), the stacked model with K = 1 (what
a run alone would use if it went through the stacked kernels; forced here, regbench never builds it), and
as member 1 of a stack of 2. Prints each way's final train loss, test loss and wall time, and the K = 1
time as a ratio of the plain one.

    python bench/alone_vs_stacked.py [--epochs 10] [--repeats 3]

Measured 2026-12-06 (2 shared CPU cores, 1 thread, 10 epochs): K = 1 matched the stack of 2 after 2 epochs
but not after 10 (train loss 0.0192405 against 0.0193443; plain alone 0.0193443 with another last digit),
and took 1.3–1.6× the plain model's time. So routing runs alone through the stacked kernels gives neither
identity with larger stacks nor ≤ 10% cost: regbench records the engine instead (README, Reproducibility).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import regbench
from regbench.nn.registry import LayerType
from regbench.training import engines, fit

FORCE_STACKED = [False]
_plain_builder = LayerType.builder


def _builder(self: LayerType, members: int):
    if FORCE_STACKED[0] and members <= 1 and self.stacked_build is not None:
        return self.stacked_build
    return _plain_builder(self, members)


def train(cfg, out: str, *, stacked_k1: bool = False, seeds=None):
    FORCE_STACKED[0] = stacked_k1
    make = fit.make_engine
    if stacked_k1:
        fit.make_engine = lambda cfgs, setup: engines.Stacked(cfgs, setup)
    t = time.perf_counter()
    try:
        run = regbench.train(cfg, out, seeds=seeds, quiet=True)
    finally:
        fit.make_engine, FORCE_STACKED[0] = make, False
    run = run[0] if isinstance(run, list) else run
    return time.perf_counter() - t, run.metrics[-1]["train_loss"], run.summary["test_loss"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    LayerType.builder = _builder
    over = {"train.epochs": args.epochs, "train.threads": 1, "seed": 11, "train.show": 0}
    cfg = regbench.load_config("configs/digits_cnn.yaml", overrides=over)
    with tempfile.TemporaryDirectory() as out:
        plain, k1 = [], []
        for _ in range(args.repeats):
            plain.append(train(cfg, out))
            k1.append(train(cfg, out, stacked_k1=True))
        pair = train(cfg, out, seeds=[11, 12])
    for name, rows in (("alone (plain)", plain), ("alone (stacked, K=1)", k1), ("stack of 2, member 1", [pair])):
        secs = statistics.median(r[0] for r in rows)
        print(f"{name:22s} train loss {rows[0][1]:.10f}  test loss {rows[0][2]:.10f}  {secs:.2f} s")
    ratio = statistics.median(r[0] for r in k1) / statistics.median(r[0] for r in plain)
    print(f"RESULT stacked K=1 / plain time: {ratio:.2f}; identical to the stack of 2: {k1[0][1:] == pair[1:]}")


if __name__ == "__main__":
    main()
