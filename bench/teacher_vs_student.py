"""Teacher (ViT-B-32 architecture, random init: latency does not depend on the weights) against a compact
student, per runtime, timed in alternating blocks in one process (`bench.harness.compare_callables`).

    python -m bench.teacher_vs_student                                    # open_clip:ViT-B-32 vs runs/student
    python -m bench.teacher_vs_student --batch 1 --batch 8 --runtime onnxruntime --runtime openvino --runtime torch
    python -m bench.teacher_vs_student --teacher runs/student-trained --max-seconds 2   # a quick smoke run
    python -m bench.teacher_vs_student --student-recipe recipes/distill-cpu-fast.yaml --batch 1 --batch 8 \
        --runtime onnxruntime --quantize              # a recipe's real-scale student at random init, + int8

--student-recipe builds the recipe's student at random init, offline (`compact.distill.student.random_init_student`:
the recipe teacher's architecture without its weights, the tokenizer fitted on reference captions), so real-scale
students can be timed before anything is distilled. --quantize also runs `compact quantize --auto` on the student's
bundle (random-init calibration, gated on cosine) and times the int8 towers against the same teacher.

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


def export_pair(teacher: str, student: str, targets: set[str], tmp: Path,
                optimize: bool = False) -> dict[str, dict[str, Path]]:
    from export import ExportConfig, export_model

    out: dict[str, dict[str, Path]] = {"teacher": {}, "student": {}}
    for role, spec in (("teacher", teacher), ("student", student)):
        for t in sorted(targets):
            log.info("exporting %s (%s) to %s", role, spec, t)
            export_model(spec, t, tmp / role / t, ExportConfig(optimize=optimize and t == "onnx"))
            out[role][t] = tmp / role / t
    return out


def recipe_student(recipe: Path, build_teacher: str | None, tmp: Path) -> tuple[str, dict]:
    """The recipe's student at random init, saved as a compact model folder (torch runtimes load it by path)."""
    from compact.distill.recipe import load_recipe
    from compact.distill.student import random_init_student
    from compact.models.folder import save_model

    student, report = random_init_student(load_recipe(recipe), build_teacher)
    folder = tmp / "recipe-student"
    save_model(student, folder)
    log.warning("%s: student %s parameters (image %s, text %s), context %s tokens, vocabulary %s", recipe,
                f"{report['parameters']['total']:,}", f"{report['parameters']['image']:,}",
                f"{report['parameters']['text']:,}", report["tokenizer"].get("context_length"),
                report["tokenizer"].get("vocab_after"))
    return str(folder), report


def quantized_student(student: str, tmp: Path, runtime: str, threads: int) -> tuple[Path, dict]:
    """`compact quantize --auto` on the student for `runtime` (gated on cosine against fp32; random init, so no
    accuracy data); returns the int8 bundle and what was chosen per tower."""
    from compact.quantize.run import GateError, QuantizeConfig, run_quantize

    out = tmp / f"student-int8-{runtime}"
    cfg = QuantizeConfig(runtime=runtime, auto=True, eval_data=None, threads=threads, latency_batch=1)
    try:
        report = run_quantize(student, cfg, out)
    except GateError as e:
        raise SystemExit(f"no int8 candidate passed the gate on {runtime}: {e}") from None
    chosen = {}
    for tower, method in report["choice"].items():
        row = next((r for r in report["candidates"] if r["method"] == method and r["tower"] == tower), None)
        chosen[tower] = {"method": method} if row is None else {
            "method": method, "cosine_mean": row.get("cosine_mean"), "speedup_vs_fp32": row["latency"]["speedup"],
            "speedup_ci95": row["latency"]["speedup_ci95"]}
    return out / "bundle", chosen


def measure(bundles: dict, runtimes: list[str], batches: list[int], timing: TimingConfig, threads: int,
            teacher_model=None, optimized: bool = False) -> list[dict]:
    """Per runtime, tower and batch: teacher (A) against student (B), then both towers summed ("image+text")."""
    rows = []
    for rt in runtimes:
        target = BUNDLE_FOR[rt]
        for tower in ("image", "text"):
            for b in batches:
                fa, close_a, facts_a = side_callable(bundles["teacher"][target], rt, tower, b, InputConfig(), threads,
                                                     teacher_model, optimized)
                fb, close_b, facts_b = side_callable(bundles["student"][target], rt, tower, b, InputConfig(), threads,
                                                     None, optimized)
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
    for rt in runtimes:
        for b in batches:
            pair = [r for r in rows if r["runtime"] == rt and r["batch"] == b and r["tower"] in ("image", "text")]
            t, s = sum(r["teacher_p50_ms"] for r in pair), sum(r["student_p50_ms"] for r in pair)
            rows.append({"runtime": rt, "tower": "image+text", "batch": b, "teacher_p50_ms": t, "student_p50_ms": s,
                         "speedup_b_over_a": t / s})
            log.warning("%-12s both  b%-3d teacher %8.3f ms  student %8.3f ms  student speed-up %.2fx", rt, b, t, s,
                        t / s)
    return rows


def int8_text_by_length(fp32: Path, int8: Path, runtime: str, lengths: list[int], timing: TimingConfig,
                        threads: int, optimized: bool = False) -> list[dict]:
    """The student's int8 text tower (B) against its fp32 one (A), batch 1, at each token length: the quantized
    projections shrink with the length while per-call and attention costs do not, so short queries gain less."""
    from export.bundle import read_manifest

    entry = next(f for f in read_manifest(int8)["files"] if f["tower"] == "text")
    # What the quantized tower runs: int8, or "bf16" / "int8+bf16" where auto chose an OpenVINO bf16 method.
    precision = entry.get("precision", "int8")
    rows = []
    for n in lengths:
        inputs = InputConfig(source="synthetic", seq=n)
        fa, close_a, _ = side_callable(fp32, runtime, "text", 1, inputs, threads, None, optimized)
        fb, close_b, _ = side_callable(int8, runtime, "text", 1, inputs, threads, None, optimized)
        try:
            r = compare_callables(fa, fb, timing)
        finally:
            close_a()
            close_b()
        # "int8_p50_ms" keeps its name (the results under docs/measured use it); "precision" says what ran.
        rows.append({"tokens": n, "precision": precision, "fp32_p50_ms": r.a.median_s * 1e3,
                     "int8_p50_ms": r.b.median_s * 1e3, **r.to_dict()})
        log.warning("%-12s %s text, %3d tokens: fp32 %7.3f ms  quantized %7.3f ms  %.2fx (95%% CI %.2f-%.2f)", runtime,
                    precision, n, r.a.median_s * 1e3, r.b.median_s * 1e3, r.speedup_b_over_a, r.speedup_ci_low,
                    r.speedup_ci_high)
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher", default="open_clip:ViT-B-32")
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--student", default="runs/student")
    src.add_argument("--student-recipe", type=Path, default=None,
                     help="a distill recipe: its student at random init, built offline (see the docstring)")
    ap.add_argument("--recipe-teacher", default=None,
                    help="--student-recipe: build against this teacher architecture (default: the recipe's, "
                         "without its pretrained weights)")
    ap.add_argument("--optimize", action="store_true", help="onnxruntime: time ORT-optimised graphs (both sides)")
    ap.add_argument("--quantize", action="store_true",
                    help="also time the student after `compact quantize --auto` against the fp32 teacher")
    ap.add_argument("--text-lengths", type=int, nargs="+", default=None, metavar="N",
                    help="--quantize: also time the student's int8 text tower against its fp32 one at these token "
                         "lengths (synthetic ids, batch 1): int8's gain depends on the length")
    ap.add_argument("--runtime", action="append", choices=sorted(BUNDLE_FOR), default=None)
    ap.add_argument("--batch", action="append", type=int, default=None)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--max-seconds", type=float, default=20.0)
    ap.add_argument("--out", type=Path, default=Path("runs/bench/teacher_vs_student.json"))
    args = ap.parse_args(argv)
    if args.text_lengths and not args.quantize:
        ap.error("--text-lengths times the int8 text tower: add --quantize")
    if args.text_lengths and min(args.text_lengths) < 2:
        ap.error("--text-lengths: every length must be at least 2 (BOS/EOS)")
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    runtimes = args.runtime or ["onnxruntime", "openvino", "torch"]
    batches = args.batch or [1, 8]
    import os

    threads = args.threads or len(os.sched_getaffinity(0))
    timing = TimingConfig(warmup=3, min_iters=20, max_iters=2000, max_seconds=args.max_seconds, threads=threads)
    extra: dict = {}
    with tempfile.TemporaryDirectory(prefix="compact-tvs-") as tmp:
        student = args.student
        if args.student_recipe is not None:
            student, report = recipe_student(args.student_recipe, args.recipe_teacher, Path(tmp))
            extra["student_recipe"] = {"recipe": str(args.student_recipe), "parameters": report["parameters"],
                                       "tokenizer": {k: report["tokenizer"].get(k) for k in
                                                     ("kind", "vocab_after", "context_length")}}
        bundles = export_pair(args.teacher, student, {BUNDLE_FOR[r] for r in runtimes}, Path(tmp), args.optimize)
        rows = measure(bundles, runtimes, batches, timing, threads, optimized=args.optimize)
        if args.quantize:
            extra["int8"] = {}
            for rt in [r for r in runtimes if r in ("onnxruntime", "openvino")]:
                q, chosen = quantized_student(student, Path(tmp), rt, threads)
                qb = {"teacher": bundles["teacher"], "student": {BUNDLE_FOR[rt]: q}}
                extra["int8"][rt] = {"chosen": chosen,
                                     "rows": measure(qb, [rt], batches, timing, threads, optimized=args.optimize)}
                if args.text_lengths:
                    extra["int8"][rt]["text_by_length"] = int8_text_by_length(
                        bundles["student"][BUNDLE_FOR[rt]], q, rt, args.text_lengths, timing, threads, args.optimize)
    result = {"teacher": args.teacher, "student": str(args.student_recipe or args.student), "threads": threads,
              **extra,
              "definition": "speedup_b_over_a = teacher p50 / student p50 (B = student), paired bootstrap 95% CI",
              "profile": device_profile(versions(runtimes)), "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    log.warning("wrote %s", args.out)


if __name__ == "__main__":
    main()
