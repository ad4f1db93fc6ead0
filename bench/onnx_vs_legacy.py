"""compact's ONNX export against a plain legacy `torch.onnx.export` of the same Hugging Face CLIP (ViT-B/32
shape, random init: latency does not depend on the weights), both on onnxruntime CPU, timed in alternating blocks in one
process. Optimum's exporter is included when `optimum.exporters.onnx` imports (it does not install here without
downgrading transformers 5 to 4.57, so it is reported as skipped).

    python -m bench.onnx_vs_legacy                     # batch 1 and 8, text length 16
    python -m bench.onnx_vs_legacy --batch 1 --max-seconds 3

Writes runs/bench/onnx_vs_legacy.json and prints a Markdown table (speed-up = legacy p50 / compact p50).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from bench.report import publish

import numpy as np
import torch


class _Image(torch.nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, pixel_values):
        out = self.m.get_image_features(pixel_values=pixel_values)
        return torch.nn.functional.normalize(out if torch.is_tensor(out) else out.pooler_output, dim=-1)


class _Text(torch.nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, input_ids, attention_mask):
        out = self.m.get_text_features(input_ids=input_ids, attention_mask=attention_mask)
        return torch.nn.functional.normalize(out if torch.is_tensor(out) else out.pooler_output, dim=-1)


def hf_clip(folder: Path) -> Path:
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizerFast

    from compact.models.hf_tokenizers import clip_bpe_tokenizer

    torch.manual_seed(0)
    CLIPModel(CLIPConfig()).eval().save_pretrained(folder)  # the default config is ViT-B/32's
    CLIPTokenizerFast(tokenizer_object=clip_bpe_tokenizer(), bos_token="<|startoftext|>", eos_token="<|endoftext|>",
                      unk_token="<|endoftext|>", pad_token="<|endoftext|>").save_pretrained(folder)
    return folder


def legacy_export(folder: Path, out: Path) -> dict[str, Path]:
    from transformers import CLIPModel

    m = CLIPModel.from_pretrained(folder).eval()
    paths = {"image": out / "image.legacy.onnx", "text": out / "text.legacy.onnx"}
    with torch.no_grad():
        torch.onnx.export(_Image(m), (torch.randn(1, 3, 224, 224),), str(paths["image"]), dynamo=False,
                          input_names=["pixel_values"], output_names=["image_embeds"], opset_version=18,
                          dynamic_axes={"pixel_values": {0: "batch"}, "image_embeds": {0: "batch"}})
        ids = torch.randint(1, 1000, (1, 16))
        torch.onnx.export(_Text(m), (ids, torch.ones_like(ids)), str(paths["text"]), dynamo=False,
                          input_names=["input_ids", "attention_mask"], output_names=["text_embeds"], opset_version=18,
                          dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"},
                                        "text_embeds": {0: "batch"}})
    return paths


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, action="append", default=None)
    ap.add_argument("--seq", type=int, default=16)
    ap.add_argument("--max-seconds", type=float, default=8.0)
    ap.add_argument("--out", default="runs/bench")
    args = ap.parse_args(argv)

    from bench.harness import TimingConfig, compare_callables
    from export import ExportConfig, export_model
    from export.targets.onnx import op_counts, ort_session

    batches = args.batch or [1, 8]
    rows, result = [], {"optimum": None}
    try:
        import optimum.exporters.onnx  # noqa: F401
        result["optimum"] = "installed but not wired into this script yet"
    except ImportError:
        result["optimum"] = ("skipped: optimum-onnx 0.1.0 needs transformers < 4.58; installing it here would "
                             "downgrade transformers 5.24")
    with tempfile.TemporaryDirectory(prefix="compact-legacy-") as tmp:
        tmp = Path(tmp)
        folder = hf_clip(tmp / "hf")
        export_model(f"hf:{folder}", "onnx", tmp / "compact", ExportConfig())
        legacy = legacy_export(folder, tmp)
        ours = {"image": tmp / "compact" / "image.onnx", "text": tmp / "compact" / "text.onnx"}
        rng = np.random.default_rng(0)
        for tower in ("image", "text"):
            a, b = ort_session(legacy[tower]), ort_session(ours[tower])
            for bs in batches:
                if tower == "image":
                    feeds = {"pixel_values": rng.standard_normal((bs, 3, 224, 224)).astype(np.float32)}
                else:
                    ids = rng.integers(1, 49000, (bs, args.seq)).astype(np.int64)
                    ids[:, 0], ids[:, -1] = 49406, 49407  # BOS ... EOS, as the tokenizer writes them
                    feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
                ya, yb = a.run(None, feeds)[0], b.run(None, feeds)[0]
                cos = float((ya * yb).sum(-1).min())
                r = compare_callables(lambda: a.run(None, feeds), lambda: b.run(None, feeds),
                                      TimingConfig(warmup=3, min_iters=10, max_seconds=args.max_seconds))
                rows.append({"tower": tower, "batch": bs, "legacy_ms": r.a.median_s * 1e3, "compact_ms": r.b.median_s * 1e3,
                             "speedup": r.speedup_b_over_a, "ci95": [r.speedup_ci_low, r.speedup_ci_high],
                             "cosine_min": cos, "legacy_ops": sum(op_counts(legacy[tower]).values()),
                             "compact_ops": sum(op_counts(ours[tower]).values())})
    result["rows"] = rows
    lines = ["| tower | batch | legacy p50 ms | compact p50 ms | compact speed-up (95% CI) | cosine | ops legacy / compact |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['tower']} | {r['batch']} | {r['legacy_ms']:.2f} | {r['compact_ms']:.2f} | {r['speedup']:.2f}x "
                     f"({r['ci95'][0]:.2f}-{r['ci95'][1]:.2f}) | {r['cosine_min']:.5f} | {r['legacy_ops']} / {r['compact_ops']} |")
    lines.append(f"\nOptimum: {result['optimum']}")
    publish("\n".join(lines), Path(args.out), "onnx_vs_legacy", result)


if __name__ == "__main__":
    main()
