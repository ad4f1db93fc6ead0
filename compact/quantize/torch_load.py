"""Loading a torch-runtime quantized model: a compact model folder plus `quantization.json`, re-applied at load.

The weights stay fp32 safetensors (no pickle) and quantization is re-applied deterministically: torchao int8
weight quantization and dtype casts are pure functions of the weights."""

from __future__ import annotations

import json
from pathlib import Path

import torch

QUANT_FILE = "quantization.json"


def apply_quantization(model, folder: Path):
    """Apply `folder/quantization.json` to a loaded CompactCLIP in place; returns the model."""
    path = Path(folder) / QUANT_FILE
    if not path.is_file():
        return model
    spec = json.loads(path.read_text())
    towers = {"image": model.visual, "text": model.text}
    for tower, q in spec.items():
        method = q["method"]
        if method.startswith("torchao_"):
            from compact.quantize.methods.torchao_int8 import torchao_config
            from torchao.quantization import quantize_

            quantize_(towers[tower], torchao_config(q["kind"]))
        elif method.endswith("_cast"):
            from compact.quantize.methods.float_cast import keep_fp32

            dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}[q["dtype"]]
            mod = towers[tower].to(dtype)
            # Names were recorded on the export wrapper ("model.visual.blocks.0.fc1"); strip to the tower.
            keep_fp32(mod, [n.split(".", 2)[-1] for n in q.get("keep_fp32", [])], dtype)
            mod.register_forward_pre_hook(lambda _m, args, d=dtype: tuple(
                a.to(d) if torch.is_tensor(a) and a.is_floating_point() else a for a in args))
            mod.register_forward_hook(lambda _m, _i, out: out.float())
    return model
