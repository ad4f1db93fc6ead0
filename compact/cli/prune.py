"""`compact prune MODEL -o OUT`."""

from __future__ import annotations

from pathlib import Path

import click

from compact.cli.progress import console, stage_bars

CONTEXT = {"help_option_names": ["-h", "--help"]}


@click.command("prune", context_settings=CONTEXT)
@click.argument("model")
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--keep", "keep_params", type=float, default=0.5, show_default=True,
              help="Fraction of the parameters to keep (0-1].")
@click.option("--importance", default="magnitude", show_default=True,
              help="Importance metric: magnitude, taylor, mope (see the registry).")
@click.option("--granularity", default="heads,mlp,layers", show_default=True,
              help="Comma-separated units to remove: heads, mlp, layers, width (residual channels; approximate, opt-in).")
@click.option("--langs", default=None, help="Trim the vocabulary to these languages' tokens (comma-separated).")
@click.option("--calib", default="reference:val", show_default=True, help="Calibration data (taylor, mope, vocab).")
@click.option("--calib-limit", type=int, default=500, show_default=True)
@click.option("--eval-data", default="reference:test", show_default=True, help="Evaluate before/after on this data.")
@click.option("--recover-steps", type=int, default=0, show_default=True,
              help="Distillation steps from the unpruned model after pruning (0 = none).")
@click.option("--recover-batch", type=click.IntRange(min=1), default=256, show_default=True,
              help="Batch size of the recovery distillation (lower it if it runs out of memory).")
@click.option("--towers", default="vision,text", show_default=True)
@click.option("--keep-flops", type=float, default=None, help="Target: fraction of the FLOPs to keep (instead of --keep).")
@click.option("--target-latency-ms", type=float, default=None,
              help="Target: measured p50 of image + text batch on --runtime (instead of --keep).")
@click.option("--runtime", type=click.Choice(["onnxruntime"]), default="onnxruntime", show_default=True,
              help="Where latency targets, the latency-aware metric and the before/after latency are measured.")
@click.option("--latency-batch", type=int, default=8, show_default=True)
@click.option("--schedule", type=click.Choice(["oneshot", "iterative"]), default="oneshot", show_default=True,
              help="iterative: prune -> recover, --iterations times, width first and depth last (MoPE-CLIP).")
@click.option("--iterations", type=int, default=3, show_default=True)
@click.option("--base-metric", default="taylor", show_default=True, help="For --importance latency: the score it divides.")
@click.option("--no-latency", is_flag=True, help="Skip the ORT latency / ONNX size measurement in report.json.")
@click.option("--overwrite", is_flag=True)
def prune(model, out, keep_params, importance, granularity, langs, calib, calib_limit, eval_data, recover_steps,
          recover_batch, towers, keep_flops, target_latency_ms, runtime, latency_batch, schedule, iterations,
          base_metric, no_latency, overwrite) -> None:
    """Structured pruning: remove heads, FFN neurons, layers and vocabulary rows for real (smaller tensors).

    MODEL is any teacher spec (compact folder, open_clip, hf:, reference). Recovery is checkpointed in .OUT.work
    beside the output: a killed run resumes it when the same command is run again.

    \b
    Examples:
      compact prune reference -o runs/teacher-pruned --keep 0.5 --langs en --recover-steps 200
      compact prune runs/student -o runs/student-fast --importance latency --target-latency-ms 5
      compact prune runs/student -o runs/student-iter --keep 0.7 --schedule iterative --recover-steps 300
    """
    from compact.cli.report import eval_table
    from compact.errors import CompactError
    from compact.prune.prune import PruneConfig, run_prune

    if recover_steps < 0 or calib_limit <= 0:
        raise CompactError("--recover-steps must be >= 0 and --calib-limit >= 1")
    split = lambda s: tuple(x.strip() for x in s.split(",") if x.strip()) if s else None  # noqa: E731
    cfg = PruneConfig(importance=importance, keep_params=keep_params, granularity=split(granularity),
                      langs=split(langs), calib=calib, calib_limit=calib_limit, eval_data=eval_data or None,
                      recover_steps=recover_steps, recover_batch=recover_batch, prune_towers=split(towers),
                      keep_flops=keep_flops,
                      target_latency_ms=target_latency_ms, schedule=schedule, iterations=iterations,
                      base_metric=base_metric, measure_latency=not no_latency, latency_batch=latency_batch)
    with stage_bars() as bars:
        rep = run_prune(model, cfg, out, overwrite, progress=bars)
    p = rep["parameters"]
    console.print(f"parameters {p['before']['total']:,} -> {p['after']['total']:,} ({p['ratio']:.1%}); "
                  f"image {p['before']['image']:,} -> {p['after']['image']:,}, text {p['before']['text']:,} -> "
                  f"{p['after']['text']:,}")
    f = rep["flops"]
    console.print(f"FLOPs per image {f['before']['image']:,} -> {f['after']['image']:,}; per text "
                  f"{f['before']['text']:,} -> {f['after']['text']:,}")
    for tower, lat in (rep.get("latency") or {}).get("towers", {}).items():
        console.print(f"{tower}: ORT p50 {lat['before_ms']:.3f} -> {lat['after_ms']:.3f} ms (x{lat['ratio']:.2f}), "
                      f"ONNX {lat['onnx_bytes_before'] / 1e6:.2f} -> {lat['onnx_bytes_after'] / 1e6:.2f} MB")
    for k, r in rep.get("eval", {}).items():
        console.print(eval_table(r, title=k.replace("_", " ")))
    console.print(f"saved to {out}")
