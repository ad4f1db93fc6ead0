"""`compact quantize MODEL -o OUT --runtime R (--method M ... | --auto)`."""

from __future__ import annotations

from pathlib import Path

import click

from compact.cli.progress import console, stage_bars
from compact.quantize.saturation import SETTINGS

CONTEXT = {"help_option_names": ["-h", "--help"]}


@click.command("quantize", context_settings=CONTEXT)
@click.argument("model", required=False)
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--runtime", type=click.Choice(["onnxruntime", "openvino", "torch", "tensorrt"]), default="onnxruntime",
              show_default=True, help="Where the quantized model runs (and is timed).")
@click.option("--method", "methods", multiple=True, help="A method to apply (repeatable); see --list.")
@click.option("--auto", is_flag=True, help="Try every method of the runtime; keep the fastest passing one per tower.")
@click.option("--towers", default="image,text", show_default=True)
@click.option("--calib", default=None, help="Calibration data source (default: the reference generator, 8 languages).")
@click.option("--calib-images", type=int, default=64, show_default=True)
@click.option("--eval-data", default="reference:val", show_default=True,
              help="Per-language zero-shot/retrieval deltas on this data ('' to skip).")
@click.option("--eval-limit", type=int, default=1000, show_default=True,
              help="Images of --eval-data for the gate (1000: the whole reference val split).")
@click.option("--max-drop", type=float, default=1.0, show_default=True, help="Gate: max drop in points, any language.")
@click.option("--min-cosine", type=float, default=0.99, show_default=True, help="Gate: min mean cosine vs fp32.")
@click.option("--force", is_flag=True, help="Write the result even if it breaches the gate.")
@click.option("--threads", type=int, default=None, help="Threads for the runtimes while timing.")
@click.option("--timing-seconds", type=float, default=10.0, show_default=True,
              help="Cap on timing each candidate against fp32, per tower (stops earlier once the speed-up's 95% CI "
                   "is within 2%).")
@click.option("--qat-steps", type=int, default=None,
              help="torch runtime: QAT recovery steps per tower (torchao_qat_int8); with --auto, also tries QAT.")
@click.option("--qat-data", default=None, help="Images + captions for QAT (default: the reference train split).")
@click.option("--qat-lr", type=float, default=1e-4, show_default=True)
@click.option("--qat-batch", type=int, default=128, show_default=True)
@click.option("--opset", type=int, default=None,
              help="ONNX opset of the fp32 graph the ONNX methods start from. Default: the export target's "
                   "(onnx 20, tensorrt 18).")
@click.option("--ort-fusion/--no-ort-fusion", default=True, show_default=True,
              help="onnxruntime: start from the graph with ORT's fused Attention/LayerNorm/GELU (fp32 and int8 "
                   "alike; the result then needs onnxruntime). --no-ort-fusion: plain ONNX ops.")
@click.option("--reduce-range", type=click.Choice(SETTINGS), default="auto", show_default=True,
              help="int8 weights with one bit of headroom (onnxruntime reduce_range, NNCF OverflowFix.ENABLE): x86 "
                   "CPUs without VNNI saturate full-range int8 products. auto: on where this CPU does; pass on for "
                   "models that will run on such CPUs.")
@click.option("--method-option", "method_options", multiple=True, metavar="KEY=VALUE",
              help="An option a method reads (repeatable), e.g. nbits=4 or op_types=MatMul,Gemm; --list shows them.")
@click.option("--list", "list_only", is_flag=True, help="List the methods and exit.")
@click.option("--overwrite", is_flag=True)
def quantize(model, out, runtime, methods, auto, towers, calib, calib_images, eval_data, eval_limit, max_drop,
             min_cosine, force, threads, timing_seconds, qat_steps, qat_data, qat_lr, qat_batch, opset, ort_fusion,
             reduce_range, method_options, list_only, overwrite) -> None:
    """Quantize MODEL for a runtime, gated per tower and per language against fp32.

    \b
    Examples:
      compact quantize runs/student -o runs/student-int8 --runtime onnxruntime --auto
      compact quantize runs/student -o runs/student-ov --runtime openvino --method nncf_openvino
      compact quantize runs/student -o runs/student-qat --runtime torch --method torchao_qat_int8 --qat-steps 300
    Core ML weight quantization / palettization is applied at export: compact export coreml --coreml-weights.
    """
    from compact.errors import CompactError
    from compact.quantize import METHODS, list_methods
    from compact.quantize.run import QuantizeConfig, run_quantize

    if list_only:
        for name in list_methods():
            m = METHODS[name]
            why = m.missing()
            console.print(f"{name:<26} {m.runtime:<12} {m.description}" + (f"  [skipped: {why}]" if why else ""),
                          soft_wrap=True)
            for key, what in m.options.items():
                console.print(f"{'':<26} --method-option {key}=...: {what}", soft_wrap=True)
        return
    if not model or not out:
        raise CompactError("give MODEL and -o OUT (or --list)")
    if eval_limit is not None and eval_limit <= 0:
        raise CompactError("--eval-limit must be positive")
    cfg = QuantizeConfig(runtime=runtime, methods=tuple(methods) or None, auto=auto,
                         towers=tuple(t.strip() for t in towers.split(",") if t.strip()), calib=calib,
                         calib_images=calib_images, eval_data=eval_data or None, eval_limit=eval_limit,
                         max_drop=max_drop, min_cosine=min_cosine, force=force, threads=threads,
                         timing_seconds=timing_seconds, overwrite=overwrite,
                         qat_steps=qat_steps, qat_data=qat_data, qat_lr=qat_lr, qat_batch=qat_batch, opset=opset,
                         ort_fusion=ort_fusion, reduce_range=reduce_range,
                         method_options=parse_method_options(method_options))
    with stage_bars() as bars:
        rep = run_quantize(model, cfg, out, progress=bars.simple)
    _print_report(rep)
    console.print(f"saved to {out}")


def parse_method_options(pairs) -> dict:
    """["nbits=4", "op_types=MatMul,Gemm", "compile=false"] -> {"nbits": 4, "op_types": ["MatMul", "Gemm"],
    "compile": False}: a JSON value where the text is one, a list where it has commas, else the string."""
    import json

    from compact.errors import CompactError

    out = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip() or not raw.strip():
            raise CompactError(f"--method-option {pair!r} is not KEY=VALUE, e.g. --method-option nbits=4")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = [v.strip() for v in raw.split(",") if v.strip()] if "," in raw else raw.strip()
        out[key.strip()] = value
    return out


def _print_report(rep: dict) -> None:
    from rich.table import Table

    table = Table(title=f"candidates on {rep['runtime']}")
    for col in ("tower", "method", "cos mean", "cos worst 1%", "SQNR dB", "max drop", "speedup", "pass"):
        table.add_column(col, justify="right" if col not in ("tower", "method") else "left",
                         no_wrap=col == "method", min_width=22 if col == "method" else None)
    for r in rep["candidates"]:
        if "error" in r:
            table.add_row(r["tower"], r["method"], "-", "-", "-", "-", "-", "error")
            continue
        drop = r.get("eval", {}).get("max_drop")
        table.add_row(r["tower"], r["method"], f"{r['cosine_mean']:.4f}", f"{r['cosine_worst1pct']:.4f}",
                      f"{r['sqnr_db']:.1f}", "-" if drop is None else f"{drop:.1f}",
                      f"{r['latency']['speedup']:.2f}x", "yes" if r["passed"] else "no")
    console.print(table)
    w = rep.get("int8_weights")
    if w and w["reduce_range"] is not None:  # None: the runtime's methods do not read it
        console.print(f"int8 weights: {'7-bit (reduce_range)' if w['reduce_range'] else '8-bit'}; {w['why']}",
                      soft_wrap=True)
    console.print("chosen: " + ", ".join(f"{t}={m}" for t, m in rep["choice"].items()))
