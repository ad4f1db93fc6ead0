"""Readable tables of evaluation reports."""

from __future__ import annotations

from rich.table import Table


def eval_table(report: dict, title: str = "") -> Table:
    table = Table(title=title or f"{report.get('model', 'model')} on {report.get('data', 'data')} "
                                 f"({report.get('n_samples')} images)")
    table.add_column("lang")
    table.add_column("zero-shot", justify="right")
    for col in ("i2t R@1", "i2t R@5", "t2i R@1", "t2i R@5", "t2i R@10"):
        table.add_column(col, justify="right")
    agreement = report.get("agreement")
    if agreement:
        table.add_column("text cos", justify="right")
    for lang in report["langs"]:
        zs = report["zero_shot"].get(lang)
        r = report["retrieval"].get(lang, {})
        row = [lang, _pct(zs)] + [_pct(r.get(k)) for k in ("i2t_r1", "i2t_r5", "t2i_r1", "t2i_r5", "t2i_r10")]
        if agreement:
            v = agreement["text_cos"].get(lang)
            row.append("-" if v is None else f"{v:.3f}")
        table.add_row(*row)
    if agreement:
        table.caption = f"image embedding cosine with the teacher: {agreement['image_cos']:.4f}"
    return table


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f}"
