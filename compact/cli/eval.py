"""`compact eval MODEL --data DATA`."""

from __future__ import annotations

from pathlib import Path

import click

from compact.cli.progress import console, stage_bars
from compact.cli.report import eval_table

CONTEXT = {"help_option_names": ["-h", "--help"]}


def write_report(report: dict, output: Path, overwrite: bool) -> Path:
    from compact.utils.io import atomic_dir, write_json

    with atomic_dir(output, overwrite=overwrite) as tmp:
        write_json(tmp / "report.json", report)
    console.print(f"wrote {output / 'report.json'}")
    return output / "report.json"


@click.command("eval", context_settings=CONTEXT)
@click.argument("model")
@click.option("--data", "data_spec", required=True,
              help="reference[:split], reference-quick[:split], a CSV/TSV/JSONL, webdataset .tar shards, "
                   "or an image folder (with --class-names).")
@click.option("--langs", default=None, help="Comma-separated languages (default: all the data has).")
@click.option("--teacher", default=None, help="Also report embedding agreement with this teacher.")
@click.option("--class-names", type=click.Path(exists=True, dir_okay=False), default=None,
              help="JSON {lang: {class_dir: name}} for an image folder.")
@click.option("--templates", type=click.Path(exists=True, dir_okay=False), default=None,
              help="JSON {lang: [\"a photo of {}.\"]} for an image folder.")
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True)
@click.option("--trust-remote-code", is_flag=True, help="Allow Hugging Face models that ship their own code.")
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for report.json.")
@click.option("--overwrite", is_flag=True, help="Replace a non-empty output folder.")
def eval_command(model, data_spec, langs, teacher, class_names, templates, batch_size, trust_remote_code,
                 output, overwrite) -> None:
    """Evaluate any CLIP per language: zero-shot top-1, retrieval R@1/5/10, agreement with a teacher.

    \b
    MODEL is a teacher spec: reference, open_clip:ViT-B-32@laion2b_s34b_b79k, hf:openai/clip-vit-base-patch32,
    py:my_module:build, or a folder (compact model, open_clip local dir, Hugging Face save_pretrained).
    Example: compact eval reference --data reference:test --langs en,de,ja -o runs/eval
    """
    from dataclasses import replace

    from compact.data.sources import open_eval_data
    from compact.eval.runner import EvalConfig, evaluate
    from compact.models.teachers import default_options, load_teacher
    from compact.utils.io import check_output_dir

    if output:
        check_output_dir(output, overwrite)  # fail before the slow part, not after
    # `compact eval --trust-remote-code` predates the global `compact --trust-remote-code`; either turns it on.
    options = replace(default_options(), trust_remote_code=True) if trust_remote_code else default_options()
    lang_list = tuple(x.strip() for x in langs.split(",") if x.strip()) if langs else None
    data = open_eval_data(data_spec, class_names=class_names, templates=templates)
    net = load_teacher(model, options)
    ref = load_teacher(teacher, options) if teacher else None
    with stage_bars() as bars:
        report = evaluate(net, data, EvalConfig(langs=lang_list, batch_size=batch_size), teacher=ref,
                          progress=bars.simple)
    report["model"] = model
    if teacher:
        report["teacher"] = teacher
    console.print(eval_table(report))
    if output:
        write_report(report, output, overwrite)
