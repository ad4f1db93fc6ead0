"""Teacher (ViT-B-32 architecture, random init: latency does not depend on the weights) against a compact
student, per runtime, timed in alternating blocks in one process (`bench.harness.compare_callables`).

    python -m bench.teacher_vs_student                                    # open_clip:ViT-B-32 vs runs/student
    python -m bench.teacher_vs_student --batch 1 --batch 8 --runtime onnxruntime --runtime openvino --runtime torch
    python -m bench.teacher_vs_student --teacher runs/student-trained --max-seconds 2   # a quick smoke run

Both models are exported (ONNX and OpenVINO IR, parity-checked) into a temporary folder, or taken from
--teacher-bundle/--student-bundle. Each side gets the inputs its own manifest asks for (224 px vs the student's
size), so the ratio is "embed the same photo / query with the student relative to the teacher".
Writes runs/bench/teacher_vs_student.json; `speedup_b_over_a` is the student's speed-up.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from pathlib import Path

from bench.compare import side_callable
from bench.harness import TimingConfig, compare_callables
from bench.inputs import InputConfig
from bench.profile import device_profile, versions

log = logging.getLogger(__name__)
BUNDLE_FOR = {"onnxruntime": "onnx", "openvino": "openvino", "torch": "onnx", "torch.compile": "onnx"}


def export_pair(teacher: str, student: str, targets: set[str], tmp: Path) -> dict[str, dict[str, Path]]:
    from export import ExportConfig, export_model

    out: dict[str, dict[str, Path]] = {"teacher": {}, "student": {}}
    for role, spec in (("teacher", teacher), ("student", student)):
        for t in sorted(targets):
            log.info("exporting %s (%s) to %s", role, spec, t)
            export_model(spec, t, tmp / role / t, ExportConfig())
            out[role][t] = tmp / role / t
    return out


def measure(bundles: dict, runtimes: list[str], batches: list[int], timing: TimingConfig, threads: int,
            teacher_model=None) -> list[dict]:
    rows = []
    for rt in runtimes:
        target = BUNDLE_FOR[rt]
        for tower in ("image", "text"):
            for b in batches:
                fa, close_a, facts_a = side_callable(bundles["teacher"][target], rt, tower, b, InputConfig(), threads,
                                                     teacher_model)
                fb, close_b, facts_b = side_callable(bundles["student"][target], rt, tower, b, InputConfig(), threads)
                try:
                    r = compare_callables(fa, fb, timing)
                finally:
                    close_a()
                    close_b()
                rows.append({"runtime": rt, "tower": tower, "batch": b, "teacher_p50_ms": r.a.median_s * 1e3,
                             "student_p50_ms": r.b.median_s * 1e3, **r.to_dict()})
                log.warning("%-12s %-5s b%-3d teacher %8.3f ms  student %8.3f ms  student speed-up %.2fx "
                            "(95%% CI %.2f-%.2f)", rt, tower, b, r.a.median_s * 1e3, r.b.median_s * 1e3,
                            r.speedup_b_over_a, r.speedup_ci_low, r.speedup_ci_high)
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher", default="open_clip:ViT-B-32")
    ap.add_argument("--student", default="runs/student")
    ap.add_argument("--runtime", action="append", choices=sorted(BUNDLE_FOR), default=None)
    ap.add_argument("--batch", action="append", type=int, default=None)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--max-seconds", type=float, default=20.0)
    ap.add_argument("--out", type=Path, default=Path("runs/bench/teacher_vs_student.json"))
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    runtimes = args.runtime or ["onnxruntime", "openvino", "torch"]
    batches = args.batch or [1, 8]
    import os

    threads = args.threads or len(os.sched_getaffinity(0))
    timing = TimingConfig(warmup=3, min_iters=20, max_iters=2000, max_seconds=args.max_seconds, threads=threads)
    with tempfile.TemporaryDirectory(prefix="compact-tvs-") as tmp:
        bundles = export_pair(args.teacher, args.student, {BUNDLE_FOR[r] for r in runtimes}, Path(tmp))
        rows = measure(bundles, runtimes, batches, timing, threads)
    result = {"teacher": args.teacher, "student": args.student, "threads": threads,
              "definition": "speedup_b_over_a = teacher p50 / student p50 (B = student), paired bootstrap 95% CI",
              "profile": device_profile(versions(runtimes)), "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    log.warning("wrote %s", args.out)


if __name__ == "__main__":
    main()
