"""Report writer: result JSONs -> report.json, report.csv, report.md, latency.png and pareto.png.

Reads what `bench run` and the on-device runner write (`kind: compact-bench` results, one per file, or a
report.json holding many), so results from several machines and runs merge into one table and one plot.
Accuracy for the Pareto chart comes from `compact eval ... -o DIR` reports (`--accuracy name=DIR/report.json`):
the mean zero-shot accuracy over languages, or the mean R@1 (both directions) when there is no zero-shot.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
from pathlib import Path
from typing import Iterable, Iterator, Optional

import numpy as np

from compact.errors import CompactError
from compact.utils.io import atomic_write_text

log = logging.getLogger(__name__)

CSV_FIELDS = ("model", "runtime", "precision", "device_tag", "threads", "tower", "batch", "seq", "p50_ms", "p90_ms",
              "p99_ms", "mean_ms", "std_ms", "ci_low_ms", "ci_high_ms", "n", "converged", "throughput_per_s",
              "load_s", "first_inference_ms", "peak_rss_mb", "size_mb", "bundle")
REPORT_FILES = ("report.json", "report.csv", "report.md", "latency.png", "pareto.png")


def publish(table: str, out_dir: Path, name: str, payload: dict) -> Path:
    """What every `python -m bench.<script>` ends with: print the Markdown table and write `payload` (plus the
    table) to OUT_DIR/NAME.json, atomically."""
    print(table)
    path = Path(out_dir) / f"{name}.json"
    atomic_write_text(path, json.dumps({"table": table, **payload}, indent=1, default=str))
    return path


def rows(results: Iterable[dict]) -> list[dict]:
    """One flat row per (result, tower, batch size)."""
    out = []
    for r in results:
        for tower, t in r.get("towers", {}).items():
            for b in t.get("batches", []):
                row = {"model": r["model"], "runtime": r.get("runtime_label", r["runtime"]), "tower": tower,
                       "size_mb": round(t.get("size_bytes", 0) / 1e6, 3), "bundle": r.get("bundle", "")}
                for k in CSV_FIELDS:
                    if k not in row:
                        row[k] = b.get(k, t.get(k, r.get(k)))
                out.append(row)
    return out


def load_results(paths: Iterable[Path]) -> tuple[list[dict], list[dict], list[dict]]:
    """(results, skipped, device profiles) from result files and report.json files."""
    results, skipped, profiles = [], [], []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            p = p / "report.json"
        try:
            data = json.loads(p.read_text())
        except FileNotFoundError:
            raise CompactError(f"{p} does not exist") from None
        except json.JSONDecodeError as e:
            raise CompactError(f"{p} is not valid JSON ({e.msg} at line {e.lineno})") from None
        if data.get("kind") == "compact-bench":
            results.append(data)
            if data.get("profile"):
                profiles.append(data["profile"])
        elif data.get("kind") == "compact-bench-report":
            results.extend(data["results"])
            skipped.extend(data.get("skipped", []))
            profiles.extend(data.get("profiles", []))
        else:
            raise CompactError(f"{p} is not a compact bench result (no kind: compact-bench); "
                               "pass files written by `compact bench run` or the on-device runner")
    return results, skipped, profiles


def accuracy_of(report: dict) -> float:
    """One number from an eval report.json: mean zero-shot over languages, else mean R@1 both ways."""
    zs = [v for v in (report.get("zero_shot") or {}).values() if v is not None]
    if zs:
        return float(np.mean(zs))
    r1 = [m[k] for m in (report.get("retrieval") or {}).values() for k in ("i2t_r1", "t2i_r1") if m.get(k) is not None]
    if r1:
        return float(np.mean(r1))
    raise CompactError("the eval report has neither zero_shot nor retrieval numbers; write it with `compact eval -o`")


def read_accuracy(specs: Iterable[str]) -> dict[str, float]:
    """`name=path/report.json` pairs -> {model name: accuracy}."""
    out = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise CompactError(f"--accuracy takes name=path/report.json, got {spec!r}")
        p = Path(path)
        p = p / "report.json" if p.is_dir() else p
        if not p.is_file():
            raise CompactError(f"accuracy report {p} does not exist; write it with `compact eval MODEL -o DIR`")
        out[name.strip().lower()] = accuracy_of(json.loads(p.read_text()))
    return out


def markdown(results: list[dict], skipped: list[dict], profiles: list[dict]) -> str:
    lines = ["# Latency", ""]
    for prof in _unique_profiles(profiles):
        flags = ", ".join(k for k, v in prof.get("cpu_flags", {}).items() if v) or "-"
        lines.append(f"- **{prof.get('cpu')}** ({prof.get('cores_usable')} cores usable, {prof.get('memory_gb')} GB, "
                     f"{prof.get('os')}, Python {prof.get('python')}); flags: {flags}; runtimes: "
                     + ", ".join(f"{k} {v}" for k, v in prof.get("runtimes", {}).items()))
    lines += ["", "| model | runtime | prec | tower | batch | p50 ms | p90 ms | p99 ms | mean ± std ms | items/s "
              "| load s | first ms | peak RSS MB | size MB |", "|" + "---|" * 14]
    for r in rows(results):
        lines.append(f"| {r['model']} | {r['runtime']} | {r['precision']} | {r['tower']} | {r['batch']} | "
                     f"{_f(r['p50_ms'])} | {_f(r['p90_ms'])} | {_f(r['p99_ms'])} | {_f(r['mean_ms'])} ± {_f(r['std_ms'])} "
                     f"| {_f(r['throughput_per_s'], 1)} | {_f(r['load_s'], 3)} | {_f(r['first_inference_ms'])} | "
                     f"{_f(r['peak_rss_mb'], 0)} | {_f(r['size_mb'], 2)} |")
    e2e = [(r, t) for r in results for t in r.get("towers", {}).values() if t.get("end_to_end")]
    if e2e:
        lines += ["", "| model | runtime | end to end | p50 ms | p90 ms | tokenizer ms/text |", "|---|---|---|---|---|---|"]
        for r, t in e2e:
            e = t["end_to_end"]
            tok = (r.get("tokenizer") or {}).get("ms_per_text") if e["name"].endswith("query") else None
            lines.append(f"| {r['model']} | {r.get('runtime_label', r['runtime'])} | {e['name']} | {_f(e['p50_ms'])} "
                         f"| {_f(e['p90_ms'])} | {_f(tok, 4)} |")
    if skipped:
        lines += ["", "Skipped:", ""] + [f"- {s['runtime']} on {s['bundle']}: {s['reason']}" for s in skipped]
    return "\n".join(lines) + "\n"


def _f(v, digits: int = 3) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _unique_profiles(profiles: list[dict]) -> list[dict]:
    seen, out = set(), []
    for p in profiles:
        key = json.dumps({k: p.get(k) for k in ("cpu", "cores_usable", "os", "runtimes")}, sort_keys=True)
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out


def to_csv(results: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore")
    w.writeheader()
    w.writerows(rows(results))
    return buf.getvalue()


def plot_latency(results: list[dict], path: Path) -> None:
    """Per-call latency distributions (smallest batch of each tower) per model/runtime, log scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    towers = sorted({t for r in results for t in r.get("towers", {})}) or ["image"]
    fig, axes = plt.subplots(1, len(towers), figsize=(6 * len(towers), 0.5 + 0.45 * max(len(results), 2)),
                             squeeze=False)
    for ax, tower in zip(axes[0], towers):
        data, labels = [], []
        for r in results:
            batches = r.get("towers", {}).get(tower, {}).get("batches", [])
            if batches:
                b = min(batches, key=lambda x: x["batch"])
                data.append(b.get("samples_ms") or [b["p50_ms"]])
                labels.append(f"{r['model']} {r.get('runtime_label', r['runtime'])} b{b['batch']}")
        if data:
            ax.boxplot(data, vert=False, showfliers=True, whis=(1, 99))
            ax.set_yticks(range(1, len(labels) + 1), labels, fontsize=8)
        ax.set_xscale("log")
        ax.set_xlabel("ms per call (whiskers p1/p99)")
        ax.set_title(f"{tower} tower")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def pareto_points(results: list[dict], accuracy: dict[str, float]) -> list[dict]:
    """One point per (model, runtime): x = p50 image + p50 text at the smallest batch (one photo + one
    query), y = the model's accuracy (or its size in MB when no accuracy is known)."""
    pts = []
    for r in results:
        lat, size = 0.0, 0.0
        for t in r.get("towers", {}).values():
            if t.get("batches"):
                lat += min(t["batches"], key=lambda x: x["batch"])["p50_ms"]
                size += t.get("size_bytes", 0) / 1e6
        pts.append({"model": r["model"], "runtime": r.get("runtime_label", r["runtime"]), "latency_ms": lat,
                    "accuracy": accuracy.get(r["model"].lower()), "size_mb": size})
    return pts


def frontier(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the Pareto-optimal points (lower x, higher y), sorted by x."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    best, keep = -np.inf, []
    for i in order:
        if points[i][1] > best:
            keep.append(i)
            best = points[i][1]
    return keep


def plot_pareto(results: list[dict], accuracy: dict[str, float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = pareto_points(results, accuracy)
    with_acc = [p for p in pts if p["accuracy"] is not None]
    use_acc = bool(with_acc)
    pts = with_acc if use_acc else pts
    ykey = "accuracy" if use_acc else "size_mb"
    fig, ax = plt.subplots(figsize=(7, 5))
    for p in pts:
        ax.scatter(p["latency_ms"], p[ykey])
        ax.annotate(f"{p['model']} / {p['runtime']}", (p["latency_ms"], p[ykey]), fontsize=7,
                    textcoords="offset points", xytext=(4, 4))
    if use_acc and pts:
        idx = frontier([(p["latency_ms"], p["accuracy"]) for p in pts])
        ax.plot([pts[i]["latency_ms"] for i in idx], [pts[i]["accuracy"] for i in idx], "--", color="gray",
                label="Pareto frontier")
        ax.legend()
    ax.set_xscale("log")
    ax.set_xlabel("ms: one photo + one query (p50, batch 1)")
    ax.set_ylabel("accuracy (eval report)" if use_acc else "size on disk, MB")
    ax.set_title("accuracy vs latency" if use_acc else "size vs latency (no --accuracy given)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


@contextlib.contextmanager
def report_folder(out: Path, overwrite: bool = False) -> Iterator[Path]:
    """For `compact bench run|report -o OUT`: lock OUT, refuse a non-empty one without --overwrite before anything
    is timed, and yield a temporary sibling that replaces OUT in one rename when the block succeeds (a killed
    benchmark leaves the previous reports or nothing)."""
    from compact.utils.io import atomic_dir, output_lock

    with output_lock(Path(out)), atomic_dir(Path(out), overwrite) as tmp:  # atomic_dir checks OUT on entry
        yield tmp


def write_reports(results: list[dict], out: Path, skipped: Optional[list[dict]] = None,
                  profiles: Optional[list[dict]] = None, accuracy: Optional[dict[str, float]] = None,
                  per_result: bool = True) -> list[Path]:
    """Every report file into `out` (created); returns the paths written."""
    from bench.run import result_name

    if not results:
        raise CompactError("no benchmark results to report; every runtime/bundle pair was skipped"
                           + (f" ({skipped[0]['runtime']}: {skipped[0]['reason']})" if skipped else ""))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    skipped, profiles, accuracy = skipped or [], profiles or [], accuracy or {}
    written = []
    if per_result:
        for r in results:
            p = out / result_name(r)
            atomic_write_text(p, json.dumps(r, indent=1))
            written.append(p)
    report = {"kind": "compact-bench-report", "results": results, "skipped": skipped,
              "profiles": _unique_profiles(profiles), "accuracy": accuracy,
              "pareto": pareto_points(results, accuracy)}
    for name, text in (("report.json", json.dumps(report, indent=1)), ("report.csv", to_csv(results)),
                       ("report.md", markdown(results, skipped, profiles))):
        atomic_write_text(out / name, text)
        written.append(out / name)
    plot_latency(results, out / "latency.png")
    plot_pareto(results, accuracy, out / "pareto.png")
    return written + [out / "latency.png", out / "pareto.png"]
