"""`compact bench run|compare|bundle|report`: latency of export bundles per runtime, and the reports."""

from __future__ import annotations

from pathlib import Path

import click

from compact.cli.progress import console, stage_bars
from compact.errors import CompactError

CONTEXT = {"help_option_names": ["-h", "--help"]}
BUNDLE = click.Path(file_okay=False, path_type=Path)


def _batches(text: str) -> tuple[int, ...]:
    try:
        out = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise CompactError(f"--batch takes comma-separated positive integers, got {text!r}") from None
    if not out or any(b <= 0 for b in out):
        raise CompactError(f"batch sizes must be positive integers, got {text!r}")
    return out


def _timing(iters, threads, max_seconds):
    from bench.harness import TimingConfig

    if iters is not None and iters <= 0:
        raise CompactError(f"--iters must be positive, got {iters}")
    return TimingConfig(iters=iters, threads=threads, max_seconds=max_seconds)


@click.group("bench", context_settings=CONTEXT)
def bench() -> None:
    """Latency of export bundles on every runtime that can run them here, and reports across machines.

    \b
    Example:
      compact bench run bundles/student-onnx bundles/student-openvino --runtime onnxruntime \\
          --runtime openvino --runtime torch -o results/
      compact bench compare bundles/teacher-onnx bundles/student-onnx
      compact bench bundle bundles/student-onnx -o on-device/
      compact bench report results/report.json phone/latency-*.json -o merged/
    """


@bench.command("run", context_settings=CONTEXT)
@click.argument("exports", nargs=-1, required=True, type=BUNDLE)
@click.option("--runtime", "runtimes", multiple=True, default=("onnxruntime",), show_default=True,
              help="Repeatable. See `compact bench runtimes`.")
@click.option("--batch", default="1,8,32", show_default=True, help="Comma-separated batch sizes.")
@click.option("--iters", type=int, default=None, help="Fixed timed calls (default: until the median's CI is ±2%).")
@click.option("--max-seconds", type=float, default=20.0, show_default=True, help="Cap per timing.")
@click.option("--threads", type=int, default=None, help="Intra-op threads (default: all usable cores).")
@click.option("--inputs", type=click.Choice(["real", "synthetic"]), default="real", show_default=True)
@click.option("--accuracy", multiple=True, help="name=path/report.json from `compact eval -o`, for the Pareto chart.")
@click.option("--spin/--no-spin", default=True, show_default=True,
              help="onnxruntime threads spin-wait between calls (steady state of one busy session); --no-spin times "
                   "sessions as compact_bundle and the apps make them (image then text: 1.9x faster there).")
@click.option("-o", "--out", type=BUNDLE, required=True)
@click.option("--overwrite", is_flag=True, help="Replace a non-empty -o folder.")
def run(exports, runtimes, batch, iters, max_seconds, threads, inputs, accuracy, spin, out, overwrite) -> None:
    """Time EXPORTS' image and text towers on each --runtime; writes report.json/csv/md, latency.png,
    pareto.png and one latency-<model>-<runtime>-<precision>-<device>.json per pair."""
    from bench.inputs import InputConfig
    from bench.report import read_accuracy, report_folder, write_reports
    from bench.run import BenchConfig, bench_bundles

    acc = read_accuracy(accuracy)
    cfg = BenchConfig(runtimes=tuple(runtimes), batch_sizes=_batches(batch), threads=threads,
                      timing=_timing(iters, threads, max_seconds), inputs=InputConfig(source=inputs), spin=spin)
    with report_folder(out, overwrite) as tmp:
        with stage_bars() as bars:
            res = bench_bundles(list(exports), cfg, progress=bars.simple)
        for s in res.skipped:
            console.print(f"skipped {s['runtime']} on {s['bundle']}: {s['reason']}", soft_wrap=True)
        write_reports(res.results, tmp, res.skipped, [res.profile], acc)
    for r in res.results:
        p50 = "  ".join(f"{t} b{b['batch']} {b['p50_ms']:.3f}" for t, v in r["towers"].items() for b in v["batches"])
        console.print(f"{r['model']:<12} {r['runtime_label']:<16} p50 ms: {p50}", soft_wrap=True)
    console.print(f"saved to {out}")


@bench.command("compare", context_settings=CONTEXT)
@click.argument("a", type=BUNDLE)
@click.argument("b", type=BUNDLE)
@click.option("--runtime", default="onnxruntime", show_default=True, help="Runtime for A (and B).")
@click.option("--runtime-b", default=None, help="Runtime for B (compare two runtimes on one bundle).")
@click.option("--batch", type=int, default=1, show_default=True)
@click.option("--iters", type=int, default=None, help="Fixed pairs (default: until the ratio's CI is ±2%).")
@click.option("--max-seconds", type=float, default=30.0, show_default=True)
@click.option("--threads", type=int, default=None)
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="JSON file.")
def compare(a, b, runtime, runtime_b, batch, iters, max_seconds, threads, out) -> None:
    """Time A and B in alternating blocks in one process; print B's speed relative to A with a 95% CI.

    \b
    Example:
      compact bench compare bundles/teacher-onnx bundles/student-onnx --batch 8
      compact bench compare bundles/student-onnx bundles/student-onnx --runtime onnxruntime --runtime-b openvino
    """
    import json

    from bench.compare import CompareConfig, compare_bundles

    if batch <= 0:
        raise CompactError(f"--batch must be positive, got {batch}")
    cfg = CompareConfig(runtime_a=runtime, runtime_b=runtime_b, batch=batch, threads=threads,
                        timing=_timing(iters, threads, max_seconds))
    res = compare_bundles(a, b, cfg)
    for tower in ("image", "text"):
        r = res.get(tower)
        if r:
            console.print(f"{tower}: A {r['a']['p50_ms']:.3f} ms, B {r['b']['p50_ms']:.3f} ms; B is "
                          f"{r['speedup_b_over_a']:.3f}x as fast as A (95% CI {r['speedup_ci_low']:.3f}-"
                          f"{r['speedup_ci_high']:.3f}, {r['a']['n']} pairs)")
    if out:
        out.write_text(json.dumps(res, indent=1))
        console.print(f"saved to {out}")


@bench.command("bundle", context_settings=CONTEXT)
@click.argument("export", type=BUNDLE)
@click.option("-o", "--out", type=BUNDLE, required=True)
@click.option("--batch", default="1,8,32", show_default=True)
@click.option("--inputs", type=click.Choice(["real", "synthetic"]), default="real", show_default=True)
@click.option("--overwrite", is_flag=True)
def bundle(export, out, batch, inputs, overwrite) -> None:
    """A self-contained folder to benchmark EXPORT on another device (runtime + numpy only).

    \b
    Example:
      compact bench bundle bundles/student-onnx -o student-ondevice/
    """
    from bench.inputs import InputConfig
    from bench.ondevice import DeviceBundleConfig, make_device_bundle

    info = make_device_bundle(export, out, DeviceBundleConfig(_batches(batch), InputConfig(source=inputs), overwrite))
    console.print(f"saved to {out}; on the device run: cd {out.name} && {info['command']}")


@bench.command("report", context_settings=CONTEXT)
@click.argument("results", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--accuracy", multiple=True, help="name=path/report.json from `compact eval -o`.")
@click.option("-o", "--out", type=BUNDLE, required=True)
@click.option("--overwrite", is_flag=True, help="Replace a non-empty -o folder.")
def report(results, accuracy, out, overwrite) -> None:
    """Merge result JSONs (bench run, on-device runner) into one table and one set of plots.

    \b
    Example:
      compact bench report results/report.json phone/latency-*.json --accuracy student=eval/student -o merged/
    """
    from bench.report import load_results, read_accuracy, report_folder, write_reports

    res, skipped, profiles = load_results(results)
    with report_folder(out, overwrite) as tmp:
        write_reports(res, tmp, skipped, profiles, read_accuracy(accuracy), per_result=False)
    console.print(f"{len(res)} results; saved to {out}")


@bench.command("runtimes", context_settings=CONTEXT)
def runtimes() -> None:
    """List the benchmark runtimes and whether each can run here."""
    from bench.run import available_runtimes

    for name, why in available_runtimes().items():
        console.print(f"{name:<22} {'ok' if why is None else 'skipped: ' + why}", soft_wrap=True)
