"""`compact export TARGET MODEL -o OUT` and `compact export all MODEL -o OUT`."""

from __future__ import annotations

from pathlib import Path

import click

from compact.cli.progress import console, stage_bars

CONTEXT = {"help_option_names": ["-h", "--help"]}


@click.command("export", context_settings=CONTEXT)
@click.argument("target")
@click.argument("model")
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--precision", type=click.Choice(["fp32", "fp16"]), default="fp32", show_default=True)
@click.option("--opset", type=int, default=None, help="ONNX opset (onnx, tensorrt). Default: 20 for onnx, 18 for tensorrt.")
@click.option("--optimize", is_flag=True, help="onnx: also write ORT-optimised graphs (attention/LayerNorm/GELU fusion).")
@click.option("--fixed-batch", type=int, default=None, help="Freeze the batch axis to this size.")
@click.option("--fixed-seq", type=int, default=None, help="Freeze the text length to this many tokens.")
@click.option("--max-batch", type=int, default=64, show_default=True, help="Upper bound of the dynamic batch axis.")
@click.option("--coreml-shapes", type=click.Choice(["fixed", "enumerated"]), default="fixed", show_default=True,
              help="coreml: fixed shapes (Neural Engine fast path) or enumerated shapes.")
@click.option("--coreml-weights", type=click.Choice(["none", "int8", "palettize4", "palettize6"]), default="none",
              show_default=True, help="coreml: weight compression applied at conversion.")
@click.option("--data", default=None, help="Parity samples from this data source (default: the reference generator).")
@click.option("--min-cosine", type=float, default=None, help="Override the target's parity tolerance.")
@click.option("--no-normalize", is_flag=True, help="Return raw embeddings instead of L2-normalised ones.")
@click.option("--name", default=None, help="Display name in reports (default: from the model path).")
@click.option("--compare-shapes/--no-compare-shapes", default=True, show_default=True,
              help="onnx/openvino: time fixed (batch 1, 16 tokens) against flexible shapes; recorded in the manifest.")
@click.option("--skip-transform", "skip_transforms", multiple=True, metavar="NAME",
              help="Do not run this deploy transform (default: every one that applies, e.g. reparameterize, "
                   "which folds MobileOne/FastViT/RepViT branches; recorded in the manifest). Repeatable.")
@click.option("--overwrite", is_flag=True, help="Replace a non-empty output folder.")
def export(target, model, out, precision, opset, optimize, fixed_batch, fixed_seq, max_batch, coreml_shapes,
           coreml_weights, data, min_cosine, no_normalize, name, compare_shapes, skip_transforms, overwrite) -> None:
    """Export MODEL's image and text encoders for TARGET into a bundle: the artifacts, manifest.json and the
    tokenizer, with parity against torch checked on real samples (per language for text).

    \b
    TARGET: onnx, openvino, coreml, tensorrt, executorch, or all (every target usable on this machine).
    MODEL:  any model spec (compact folder, open_clip:NAME, hf:ID, reference, a folder).
    Example:
      compact export onnx runs/student -o bundles/student-onnx
      compact export all runs/student -o bundles/student
    """
    from export.bundle import ExportConfig, export_all, export_model

    opts = {"coreml_shapes": coreml_shapes, "coreml_weights": None if coreml_weights == "none" else coreml_weights}
    cfg = ExportConfig(opset=opset, normalize=not no_normalize, optimize=optimize, fixed_batch=fixed_batch,
                       fixed_seq=fixed_seq, max_batch=max_batch, precision=precision, data=data,
                       min_cosine=min_cosine, overwrite=overwrite, target_options=opts, name=name,
                       compare_shapes=compare_shapes, skip_transforms=tuple(skip_transforms))
    with stage_bars() as bars:
        if target == "all":
            summary = export_all(model, out, cfg, progress=bars.simple)
        else:
            manifest = export_model(model, target, out, cfg, progress=bars.simple)
    if target == "all":
        for name, files in summary["written"].items():
            console.print(f"{name}: {', '.join(files)}")
        for name, why in summary["skipped"].items():
            console.print(f"skipped {name}: {why}")
    else:
        for f in manifest["files"]:
            p = f["parity"]
            check = (f"cos min {p['cosine_min']:.6f}, err {p['max_abs_err']:.0e}"
                     if p.get("verified") else f"parity unverified: {p['reason']}")
            console.print(f"{f['path']:<20} {f['size_bytes'] / 1e6:6.2f} MB  {check}", soft_wrap=True)
        for t in manifest.get("deploy_transforms") or []:
            console.print(f"deploy transform {t['name']}: {t['modules']} modules, "
                          f"{t['parameters_before']:,} -> {t['parameters_after']:,} parameters")
        for tower, v in (manifest.get("shape_study") or {}).items():
            if isinstance(v, dict):
                console.print(f"{tower}: fixed shapes {v['fixed_ms']:.3f} ms vs flexible {v['flexible_ms']:.3f} ms "
                              f"(x{v['fixed_over_flexible']:.2f}) on {manifest['shape_study']['runtime']}")
    console.print(f"saved to {out}")
