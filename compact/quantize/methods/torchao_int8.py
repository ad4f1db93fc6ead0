"""torchao int8 for the torch runtime: dynamic-activation int8 / int8-weight, and int8 weight-only.

torchao speeds transformer towers up only under `torch.compile` (measured here: eager can be slower), so the
candidate is compiled (`dynamic=False`: compiling several models with dynamic shapes in one process crashed)
and timed against an equally compiled fp32 tower; evaluation runs eagerly (same numerics, no recompiles).
"""

from __future__ import annotations

import copy

import torch

from compact.quantize import Candidate, QuantMethod, register_method


def torchao_config(kind: str):
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, Int8WeightOnlyConfig

    return {"int8_dynamic": Int8DynamicActivationInt8WeightConfig, "int8_weight_only": Int8WeightOnlyConfig}[kind]()


def quantize_module(module: torch.nn.Module, kind: str) -> torch.nn.Module:
    from torchao.quantization import quantize_

    m = copy.deepcopy(module).eval()
    # Only Linear layers: the patch-embedding Conv and embeddings stay fp32 (torchao's default filter).
    quantize_(m, torchao_config(kind))
    return m


class _TorchAO(QuantMethod):
    options = {"compile": "time under torch.compile (default true; false: eager)"}
    runtime = "torch"
    packages = ("torchao",)
    extra = "torchao"
    kind = ""

    def quantize(self, ctx, tower: str) -> Candidate:
        from compact.quantize.run import torch_runner

        m = quantize_module(ctx.towers[tower].module, self.kind)
        compiled = bool(ctx.cfg.method_options.get("compile", True))
        timed = torch.compile(m, dynamic=False) if compiled else m
        precision = "int8" if self.kind == "int8_dynamic" else "int8-weights"
        return Candidate(self.name, tower, torch_runner(m), precision,
                         details={"config": {"kind": self.kind}, "compiled_for_latency": compiled}, module=m,
                         timed_runner=torch_runner(timed) if compiled else None)


@register_method
class TorchAOInt8Dynamic(_TorchAO):
    name = "torchao_int8_dynamic"
    description = "torchao Int8DynamicActivationInt8WeightConfig (+ torch.compile)"
    kind = "int8_dynamic"


@register_method
class TorchAOInt8WeightOnly(_TorchAO):
    name = "torchao_int8_weight_only"
    description = "torchao Int8WeightOnlyConfig (+ torch.compile)"
    kind = "int8_weight_only"
