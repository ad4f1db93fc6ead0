"""`compact bench bundle EXPORT -o DIR`: a self-contained benchmark folder to copy to a phone, a board or a
colleague's laptop. It holds the model files, the inputs as .npy, `bench_runner.py` (needs only the runtime,
numpy and the standard library) and a README with the exact command. The runner's JSON merges with other
results through `compact bench report`.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.inputs import InputConfig, fixed_batch, load_tokenizer, tower_feeds
from bench.run import model_name
from compact.errors import CompactError
from compact.utils.io import atomic_dir, check_output_dir
from export.bundle import MANIFEST, read_manifest

RUNNER = Path(__file__).with_name("device_runner.py")
RUNNER_NAME = "bench_runner.py"
RUNTIMES_FOR = {"onnx": ("onnxruntime", "openvino"), "tensorrt": ("onnxruntime",), "openvino": ("openvino",)}


@dataclass
class DeviceBundleConfig:
    batch_sizes: tuple[int, ...] = (1, 8, 32)
    inputs: InputConfig = field(default_factory=InputConfig)
    overwrite: bool = False

    def __post_init__(self) -> None:
        if not self.batch_sizes or any(int(b) <= 0 for b in self.batch_sizes):
            raise CompactError(f"batch sizes must be positive integers, got {list(self.batch_sizes)}")


def make_device_bundle(export: Path, out: Path, cfg: DeviceBundleConfig = DeviceBundleConfig()) -> dict:
    """Write the folder; returns {"runtimes", "command", "files"}."""
    export, out = Path(export), Path(out)
    manifest = read_manifest(export)
    runtimes = RUNTIMES_FOR.get(manifest.get("target"))
    if not runtimes:
        raise CompactError(f"the on-device runner runs onnx and openvino bundles; {export} is a "
                           f"{manifest.get('target')!r} bundle (time it with `compact bench run` instead)")
    check_output_dir(out, cfg.overwrite)
    name = model_name(manifest, export)
    tok = load_tokenizer(export, manifest)
    with atomic_dir(out, overwrite=cfg.overwrite) as tmp:
        files = [MANIFEST]
        for entry in manifest["files"]:
            for rel in [entry["path"], *entry.get("companions", [])]:
                src = export / rel
                (shutil.copytree if src.is_dir() else shutil.copy2)(src, tmp / rel)
                files.append(rel)
        shutil.copy2(export / MANIFEST, tmp / MANIFEST)
        (tmp / "inputs").mkdir()
        index = []
        for tower in sorted({f["tower"] for f in manifest["files"]}):
            fixed = fixed_batch(manifest, tower)
            for b in ([fixed] if fixed else cfg.batch_sizes):
                feeds = tower_feeds(export, manifest, tower, b, cfg.inputs, tok)
                names = {}
                for k, v in feeds.items():
                    names[k] = f"{tower}-b{b}-{k}.npy"
                    np.save(tmp / "inputs" / names[k], np.ascontiguousarray(v))
                index.append({"tower": tower, "batch": b, "feeds": names, "model": name, "inputs": cfg.inputs.source})
        (tmp / "inputs" / "index.json").write_text(json.dumps(index, indent=1))
        shutil.copy2(RUNNER, tmp / RUNNER_NAME)
        command = f"python {RUNNER_NAME} --runtime {runtimes[0]}"
        (tmp / "README.md").write_text(_readme(name, manifest, runtimes, command, index))
    return {"runtimes": list(runtimes), "command": command, "files": files + [RUNNER_NAME, "README.md", "inputs/"]}


def _readme(name: str, manifest: dict, runtimes, command: str, index: list[dict]) -> str:
    pip = {"onnxruntime": "onnxruntime numpy", "openvino": "openvino numpy"}
    batches = ", ".join(f"{e['tower']} b{e['batch']}" for e in index)
    return f"""# On-device latency benchmark: {name} ({manifest.get('target')} bundle)

Needs Python 3.9+, numpy and one runtime ({' or '.join(runtimes)}); nothing else.

    pip install {pip[runtimes[0]]}
    {command}

Options: `--runtime {'|'.join(runtimes)}`, `--threads N`, `--iters N` (default: until the 95% CI of the
median is within ±2%, at most 2000 calls or 20 s), `-o result.json`.

It times {batches} on the inputs in `inputs/` and writes
`latency-{name}-<runtime>-<precision>-<cpu>.json`. Bring that file back and merge it with other results:

    compact bench report latency-*.json other-results/report.json -o merged/
"""
