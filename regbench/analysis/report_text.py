"""The report's words in English and Korean (`report --lang`, by default the language the runs were trained in).

Column headers, run names and config keys stay as they are: they are what `compare` prints and what the
config files say, in either language."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from ..rundir import Run

LANGS = ("ko", "en")

TEXT: dict[str, dict[str, str]] = {
    "en": {
        "title": "regbench report",
        "written": "{what}. Written {when} by `regbench report`.",
        "not_read": "Paths that were not read:",
        "comparison": "Comparison",
        "models": "Models",
        "model_note": "{key}: {layers}",
        "curves": "Learning curves",
        "curves_cap": "every row; seed groups as mean ± std over their seeds",
        "no_metrics": "No run has per-epoch metrics yet.",
        "diffs": "Config differences",
        "same_config": "The rows share one resolved config apart from the seed.",
        "one_row": "One row.",
        "hists": "Parameter distributions",
        "hists_para": "The book's show_param_dist: weights and kernels (no biases), 100 bins, density, with mu and sigma.",
        "seed": "seed {seed}",
        "no_model": "No model saved (see notes).",
        "samples": "Sample test predictions",
        "samples_para": "The same test images for every row on one data set; bars: estimated probabilities "
        "(the estimate green when right, red when wrong; the answer outlined); `estimate : answer O/X`.",
        "first_seed": " (first seed of the group)",
        "skipped": "Skipped (see notes).",
        "confusion": "Confusion matrix of the best run",
        "no_best": "No completed run with a test accuracy.",
        "confusion_cap": "{name}: best test accuracy {acc:.3f} (first head); test split, {n} samples",
        "runs": "Runs",
        "provenance": "Provenance",
        "notes": "Notes",
        "legend": "test acc: per head joined by + (e.g. 0.874+0.558); best val @epoch: first head; "
        "train−val: final train accuracy minus final validation accuracy; near 0 %: weights with |w| ≤ 1e-5; "
        "w mean / w std: weights and kernels; train s/member: the pass's training wall time divided among the runs "
        "trained side by side in it (engine: alone or ×K, with CPU threads); notes: BN averages N% initial = "
        "batch_normal running averages still hold N% of their initial values (exp_ratio × steps too small).",
        "legend_groups": "Rows with n > 1 are seed groups (configs equal apart from the seed): "
        "mean±std (sample std) over n runs.",
        "legend_baseline": "Δ and verdict: {metric} (first head) against {base}; the paired t-test when both "
        "rows hold the same seeds, else Welch's (exact permutation or sign-flip tests where there is no spread; "
        "McNemar on the test set's examples for two single runs: test-set noise only); 95% CI of Δ; "
        "'better'/'worse' when p after Holm's correction across the rows is < 0.05; 'seeds for 80%': seeds per "
        "group that would resolve Δ at 80% power. p covers seed variance on a fixed split (data.seed).",
    },
    "ko": {
        "title": "regbench 보고서",
        "written": "{what}. `regbench report`가 {when}에 작성.",
        "what": "실행 {runs}개, 행 {rows}개",
        "what_groups": " (시드 그룹 {groups}개: 시드 n개의 평균±표준편차)",
        "what_base": "; 기준 {base}, {metric}에 대한 판정 (Welch t-검정, p<0.05)",
        "not_read": "읽지 못한 경로:",
        "comparison": "비교",
        "models": "모델",
        "model_note": "{key}: {layers}",
        "curves": "학습 곡선",
        "curves_cap": "모든 행; 시드 그룹은 시드에 대한 평균 ± 표준편차",
        "no_metrics": "에폭별 지표가 있는 실행이 아직 없습니다.",
        "diffs": "설정 차이",
        "same_config": "모든 행이 시드를 빼면 같은 설정입니다.",
        "one_row": "행이 하나입니다.",
        "hists": "파라미터 분포",
        "hists_para": "교재의 show_param_dist: 가중치와 커널(편향 제외), 100구간 밀도 히스토그램, mu와 sigma 표시.",
        "seed": "시드 {seed}",
        "no_model": "저장된 모델이 없습니다 (메모 참고).",
        "samples": "테스트 샘플 추정",
        "samples_para": "같은 데이터셋의 모든 행에 같은 테스트 이미지; 막대: 추정 확률 분포 "
        "(맞으면 추정이 초록, 틀리면 빨강; 정답은 테두리); `추정 : 정답 O/X`.",
        "first_seed": " (그룹의 첫 시드)",
        "skipped": "건너뜀 (메모 참고).",
        "confusion": "최고 실행의 혼동 행렬",
        "no_best": "테스트 정확도가 있는 완료된 실행이 없습니다.",
        "confusion_cap": "{name}: 최고 테스트 정확도 {acc:.3f} (첫 출력); 테스트 데이터 {n}개",
        "runs": "실행",
        "provenance": "출처",
        "notes": "메모",
        "legend": "test acc: 출력별로 +로 연결 (예: 0.874+0.558); best val @epoch: 첫 출력; "
        "train−val: 마지막 학습 정확도 − 마지막 검증 정확도; near 0 %: |w| ≤ 1e-5인 가중치 비율; "
        "w mean / w std: 가중치와 커널; train s/member: 함께 학습한 실행 수로 나눈 학습 시간 "
        "(engine: 단독 또는 ×K, CPU 스레드 수); notes: BN averages N% initial = batch_normal 이동 평균에 초기값이 "
        "아직 N% 남아 있음 (exp_ratio × 스텝 수가 작음).",
        "legend_groups": "n > 1인 행은 시드 그룹(시드만 다른 설정)이며 n개 실행의 평균±표준편차(표본)입니다.",
        "legend_baseline": "Δ와 verdict: {base} 대비 {metric} (첫 출력); 두 행이 같은 시드를 가지면 대응 t-검정, "
        "아니면 Welch t-검정 (분산이 없으면 정확 순열·부호 뒤집기 검정; 단일 실행 둘은 테스트 예제에 대한 McNemar: "
        "테스트셋 잡음만); Δ의 95% 신뢰구간; 표의 행 전체에 Holm 보정한 p < 0.05이면 'better'/'worse'; "
        "'seeds for 80%': 80% 검정력으로 Δ를 가리는 데 필요한 그룹당 시드 수. p는 고정된 분할(data.seed)에서의 "
        "시드 분산을 다룹니다.",
    },
}


def runs_lang(runs: Sequence[Run]) -> str:
    """The language most of the runs were trained in (summary.json `lang`); `ko`, the training default, if none says."""
    seen = Counter(r.summary.get("lang") for r in runs if r.summary.get("lang") in LANGS)
    return seen.most_common(1)[0][0] if seen else "ko"


def texts(lang: str) -> dict[str, str]:
    return TEXT[lang]


def summary_line(comp, t: dict[str, str]) -> str:
    """compare's title (`6 runs in 3 rows …`) in the report's language."""
    if "what" not in t:
        return comp.title()
    groups = sum(1 for row in comp.rows if row.is_group)
    text = t["what"].format(runs=len(comp.runs), rows=len(comp.rows))
    if groups:
        text += t["what_groups"].format(groups=groups)
    if comp.baseline:
        text += t["what_base"].format(base=comp.baseline.label, metric=comp.metric)
    return text
