"""Diagnostics printed after a run's test report: batch_normal running averages that have not converged.

The book's batch_normal moves its running mean and variance by `exp_ratio` per training step, so after S
steps a share (1 − exp_ratio)^S of their initial values (mean 0, variance 1) is still in them. With the
book's exp_ratio 0.001, 1,000 steps leave 37%: the model tests with statistics that are not its data's and
can test far below its training accuracy. That is the averages, not batch normalization, and the note says
so rather than letting a student conclude "BN hurts".
"""

from __future__ import annotations

from typing import Any

import torch

LEFT_OVER = 0.05  # a running average holding more than this share of its initial value is flagged


def bn_residue(net: torch.nn.Module, steps: int) -> dict[str, Any] | None:
    """For the batch_normal layers of `net` after `steps` training steps: the smallest exp_ratio, and the
    largest share of the initial values left in any running average, as a record for summary.json when it
    exceeds LEFT_OVER; else None."""
    ratios = [float(m.exp_ratio) for m in net.modules() if hasattr(m, "exp_ratio") and hasattr(m, "running_mean")]
    if not ratios:
        return None
    ratio = min(ratios)
    left = (1.0 - ratio) ** max(steps, 0)
    if left <= LEFT_OVER:
        return None
    return {"exp_ratio": ratio, "steps": steps, "initial_share": round(left, 4), "layers": len(ratios)}


def bn_note(record: dict[str, Any], lang: str) -> str:
    """The one line printed after the test report, in the run's language."""
    share, ratio, steps = record["initial_share"], record["exp_ratio"], record["steps"]
    if lang == "ko":
        return (
            f"참고: batch_normal의 이동 평균에 초기값이 아직 {share:.0%} 남아 있습니다 (exp_ratio {ratio:g} × {steps} 스텝). "
            "테스트 정확도가 학습 정확도보다 낮다면 BN 자체가 아니라 수렴하지 않은 이동 평균 때문일 수 있습니다. "
            "exp_ratio를 키우거나 더 오래 학습하십시오."
        )
    return (
        f"Note: batch_normal's running averages still hold {share:.0%} of their initial values "
        f"(exp_ratio {ratio:g} × {steps} steps); a test accuracy far below the training accuracy may come from "
        "these unconverged averages, not from batch normalization; raise exp_ratio or train longer."
    )


def engine_record(k: int) -> dict[str, Any]:
    """What summary.json says about how a run was trained: alone, or side by side with K members (stacked
    kernels: numbers equal to a run alone only up to float rounding, see RELIABILITY.md), and the member
    count that divides the pass's wall time (`train_s_share`)."""
    return {"engine": "alone" if k == 1 else f"side by side with {k} members", "members": k}
