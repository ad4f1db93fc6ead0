"""`OUT/report.html`: one self-contained page (inline CSS, plots as data URIs) with everything `compact run`
measured: per-language quality of every model, sizes, latency tables and plots, export parity, the quantization
choice, and what this machine skipped and why."""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
from pathlib import Path

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1100px;color:#222}
h1{font-size:22px;margin-bottom:4px} h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:8px 0} td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}
th{background:#f4f4f4} td:first-child,th:first-child{text-align:left} .bad{color:#b00020} .ok{color:#0a7d32}
.muted{color:#666} img{max-width:100%;border:1px solid #eee}
"""


def _esc(x) -> str:
    return html.escape(str(x))


def _table(head: list[str], rows: list[list]) -> str:
    th = "".join(f"<th>{_esc(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _img(path: Path, alt: str) -> str:
    if not path.is_file():
        return f"<p class=muted>({_esc(alt)}: not produced)</p>"
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{_esc(alt)}" src="data:image/png;base64,{data}">'


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


def quality_section(out: Path) -> str:
    reports = {}
    for f in sorted((out / "eval").glob("*.json")):
        if f.name != "stage.json":
            reports[f.stem] = json.loads(f.read_text())
    if not reports:
        return "<p class=muted>no evaluation</p>"
    order = [n for n in ("teacher", "student", "student-pruned", "student-int8") if n in reports]
    order += [n for n in reports if n not in order]
    langs = sorted({lang for r in reports.values() for lang in r.get("langs", [])})
    zs_rows, r1_rows = [], []
    for lang in langs:
        zs_rows.append([lang] + [_pct(reports[n].get("zero_shot", {}).get(lang)) for n in order])
        r1_rows.append([lang] + [_pct(reports[n].get("retrieval", {}).get(lang, {}).get("t2i_r1")) for n in order])
    any_r = next(iter(reports.values()))
    caption = f"<p class=muted>data: {_esc(any_r.get('data'))}, {any_r.get('n_samples')} images</p>"
    return (caption + "<h3>zero-shot top-1 (%)</h3>" + _table(["lang", *order], zs_rows)
            + "<h3>text-to-image R@1 (%)</h3>" + _table(["lang", *order], r1_rows))


def sizes_section(out: Path, summary: dict) -> str:
    rows = []
    for name, files in (summary.get("export", {}).get("bundles") or {}).items():
        size = sum(f["size_bytes"] for f in files.values())
        rows.append([_esc(name), f"{size / 1e6:.2f} MB", _esc(", ".join(files))])
    qb = out / "quantize" / "bundle" / "manifest.json"
    if qb.is_file():
        m = json.loads(qb.read_text())
        rows.append(["student-int8 (onnx)", f"{sum(f['size_bytes'] for f in m['files']) / 1e6:.2f} MB",
                     _esc(", ".join(f"{f['path']} ({f['precision']})" for f in m["files"]))])
    params = []
    for stage in ("distill", "prune"):
        p = (summary.get(stage) or {}).get("parameters")
        if p:
            after = p.get("after", p)
            params.append(f"{stage}: {after.get('total', 0) / 1e6:.2f}M parameters")
    return (_table(["bundle", "size on disk", "files"], rows)
            + (f"<p>{_esc('; '.join(params))}</p>" if params else ""))


def latency_section(out: Path) -> str:
    path = out / "bench" / "report.json"
    if not path.is_file():
        return "<p class=muted>no benchmark</p>"
    rep = json.loads(path.read_text())
    rows = []
    for r in rep["results"]:
        for tower, t in r.get("towers", {}).items():
            for b in t.get("batches", []):
                rows.append([_esc(r["model"]), _esc(r.get("runtime_label", r["runtime"])), _esc(r.get("precision")),
                             tower, b["batch"], f"{b['p50_ms']:.3f}", f"{b.get('p90_ms', 0):.3f}",
                             f"{b.get('p99_ms', 0):.3f}", f"{b.get('throughput_per_s', 0):.0f}"])
    prof = (rep.get("profiles") or [{}])[0]
    cpu = prof.get("cpu", {}) if isinstance(prof.get("cpu"), dict) else {}
    device = _esc(cpu.get("model") or prof.get("device_tag") or "this machine")
    return (f"<p class=muted>measured on {device}; p50/p90/p99 in ms per call</p>"
            + _table(["model", "runtime", "precision", "tower", "batch", "p50", "p90", "p99", "items/s"], rows)
            + "<h3>accuracy against latency</h3>" + _img(out / "bench" / "pareto.png", "Pareto chart")
            + "<h3>latency distribution</h3>" + _img(out / "bench" / "latency.png", "latency distribution"))


def parity_section(out: Path) -> str:
    rows = []
    for manifest in sorted((out / "export").glob("*/manifest.json")):
        m = json.loads(manifest.read_text())
        for f in m["files"]:
            p = f.get("parity", {})
            if p.get("verified"):
                ok = p.get("passed", True)
                cell = f"<span class={'ok' if ok else 'bad'}>{p['cosine_min']:.6f}</span>"
                rows.append([_esc(manifest.parent.name), _esc(f["path"]), cell, f"{p['max_abs_err']:.1e}",
                             _esc(p.get("runtime", ""))])
            else:
                rows.append([_esc(manifest.parent.name), _esc(f["path"]), "unverified", "-", _esc(p.get("reason"))])
    return _table(["bundle", "file", "cosine min", "max abs err", "checked on"], rows)


def quantize_section(out: Path) -> str:
    path = out / "quantize" / "report.json"
    if not path.is_file():
        return "<p class=muted>no quantization stage</p>"
    rep = json.loads(path.read_text())
    rows = []
    for r in rep["candidates"]:
        if "error" in r:
            rows.append([_esc(r["tower"]), _esc(r["method"]), "error", "-", "-", "-", _esc(r["error"])[:120]])
            continue
        lat = r.get("latency", {})
        rows.append([_esc(r["tower"]), _esc(r["method"]), f"{r['cosine_mean']:.4f}", f"{r['sqnr_db']:.1f}",
                     "-" if "eval" not in r else f"{r['eval']['max_drop']:.1f}",
                     f"{lat.get('speedup', 0):.2f}x", "<span class=ok>pass</span>" if r["passed"]
                     else f"<span class=bad>{_esc('; '.join(r.get('failed', [])))}</span>"])
    choice = ", ".join(f"{t}: {m}" for t, m in (rep.get("choice") or {}).items())
    written = "written" if rep.get("written") else "<span class=bad>not written (gate breached)</span>"
    return (f"<p>runtime {_esc(rep['runtime'])}; chosen per tower: <b>{_esc(choice)}</b>; {written}</p>"
            + _table(["tower", "method", "cosine vs fp32", "SQNR dB", "max drop (pts)", "speed-up", "gate"], rows))


def write_report(out: Path, recipe, summary: dict, skipped: dict) -> Path:
    out = Path(out)
    stages = _table(["stage", "seconds"], [[_esc(k), v.get("seconds", "-")] for k, v in summary.items()])
    skip = (_table(["what", "why"], [[_esc(k), _esc(v)] for k, v in sorted(skipped.items())])
            if skipped else "<p>nothing</p>")
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    page = f"""<!doctype html><html lang=en><head><meta charset=utf-8><title>compact run: {_esc(recipe.name)}</title>
<style>{CSS}</style></head><body>
<h1>compact run: {_esc(recipe.name)}</h1>
<p class=muted>teacher {_esc(recipe.teacher)} &middot; data {_esc(recipe.data)} &middot; languages
{_esc(", ".join(recipe.langs))} &middot; {now}</p>
<h2>Quality per language</h2>{quality_section(out)}
<h2>Sizes</h2>{sizes_section(out, summary)}
<h2>Latency</h2>{latency_section(out)}
<h2>Quantization</h2>{quantize_section(out)}
<h2>Export parity</h2>{parity_section(out)}
<h2>Skipped on this machine</h2>{skip}
<h2>Stages</h2>{stages}
</body></html>"""
    path = out / "report" / "report.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path
