"""torchao QAT recovery: fake-quantize one tower's Linear layers the way `torchao_int8_dynamic` will quantize
them, distil it back towards the fp32 model with the distillation losses, then convert and quantize for real.

    compact quantize runs/student -o runs/student-qat --runtime torch --method torchao_qat_int8 --qat-steps 300
    compact quantize runs/student -o runs/student-int8 --runtime torch --auto --qat-steps 300   # PTQ and QAT

The flow is torchao's: `quantize_(tower, QATConfig(activation_config=..., weight_config=..., step="prepare"))`,
train, `quantize_(tower, QATConfig(step="convert"))` (back to nn.Linear), then the PTQ config
`Int8DynamicActivationInt8WeightConfig`. The fake-quant configs follow that PTQ config (int8 per-token
activations, int8 per-channel symmetric weights; the activations are fake-quantized asymmetrically, the only
per-token mode torchao's QAT has), and the gate measures the real int8 result. torchao's QATConfig cannot
infer them from the int8 PTQ config (it derives only int4/float8/MX/NVFP4 schemes), hence the explicit configs.

Training is `compact.distill`'s Distiller started from the fp32 model, with that same fp32 model as the teacher:
the `vision` stage (feature_cosine on images) for the image tower, the `text` stage (feature_cosine of every
language's caption to the fp32 embedding of that same caption) for the text tower. The result is written as the
retrained fp32 weights plus `quantization.json`, which `load_model` re-applies (no pickle).
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import torch
from torch import nn

from compact.errors import CompactError
from compact.quantize import Candidate, QuantMethod, register_method

log = logging.getLogger(__name__)

DEFAULT_STEPS = 300


def fake_quant_configs(weight_bits: int = 8):
    from torchao.quantization.qat import IntxFakeQuantizeConfig

    # torchao's per-token fake quantizer is asymmetric only ("Symmetric per token is not supported yet"); the int8
    # kernel after convert quantizes symmetrically, and the gate measures that real int8 result.
    act = IntxFakeQuantizeConfig(torch.int8, "per_token", is_symmetric=False)
    weight = IntxFakeQuantizeConfig(torch.int8 if weight_bits == 8 else getattr(torch, f"int{weight_bits}"),
                                    "per_channel", is_symmetric=True)
    return act, weight


def _is_linear(module: nn.Module, _fqn: str) -> bool:
    return type(module) is nn.Linear


def prepare_qat(tower: nn.Module) -> int:
    """Swap the tower's nn.Linear layers for torchao FakeQuantizedLinear in place; returns how many."""
    from torchao.quantization import quantize_
    from torchao.quantization.qat import QATConfig

    n = sum(1 for m in tower.modules() if type(m) is nn.Linear)
    act, weight = fake_quant_configs()
    quantize_(tower, QATConfig(activation_config=act, weight_config=weight, step="prepare"), filter_fn=_is_linear)
    return n


def convert_qat(tower: nn.Module) -> None:
    """Swap FakeQuantizedLinear back to nn.Linear (the trained weights stay), in place."""
    from torchao.quantization import quantize_
    from torchao.quantization.qat import FakeQuantizedLinear, QATConfig

    quantize_(tower, QATConfig(step="convert"), filter_fn=lambda m, _f: isinstance(m, FakeQuantizedLinear))


def qat_recover(model, tower: str, steps: int, data: str, langs: list[str], work: Path, batch_size: int = 128,
                lr: float = 1e-4, seed: int = 0, progress=None):
    """Return (a copy of `model` whose `tower` was QAT-trained for `steps`, training report)."""
    from compact.distill.recipe import DistillRecipe, StageConfig
    from compact.distill.trainer import DistillOptions, Distiller
    from compact.models.folder import save_model

    if steps <= 0:
        raise CompactError(f"QAT needs a positive number of steps, got {steps}; pass --qat-steps N")
    work.mkdir(parents=True, exist_ok=True)
    save_model(model, work / "fp32")
    stage = "vision" if tower == "image" else "text"
    recipe = DistillRecipe(teacher=str(work / "fp32"), data=data, langs=list(langs), student_init=str(work / "fp32"),
                           stages=[StageConfig(name=stage, steps=steps, batch_size=batch_size, lr=lr, warmup_frac=0.0,
                                               losses={"feature_cosine": 1.0})],
                           val_every=0, seed=seed, bf16=False, checkpoint_every=10**9)
    d = Distiller(recipe, DistillOptions(out=work / "qat"),
                  progress=(lambda _s, a, b, _info: progress(f"QAT {tower}", a, b)) if progress else None)
    d.setup()
    if stage == "text":
        # Recovery targets the fp32 model itself: each caption is distilled to the fp32 embedding of that same
        # caption, not to the English pivot's (which would re-align languages and move away from fp32).
        from compact.distill.data import ParallelText

        d.parallel = ParallelText(list(d.parallel.text), list(d.parallel.text), list(d.parallel.lang))
    module = d.student.visual if tower == "image" else d.student.text
    n = prepare_qat(module)
    state = d.train()
    convert_qat(module)
    left = [name for name, m in module.named_modules() if "FakeQuantized" in type(m).__name__]
    if left:
        raise CompactError(f"QAT convert left fake-quantized layers in the {tower} tower: {left[:3]}")
    trained = d.student.eval()
    curve = state["curves"].get(stage, [])
    log.info("QAT %s: %d Linear layers, %d steps, loss %s -> %s", tower, n, steps, curve[0][1] if curve else None,
             curve[-1][1] if curve else None)
    return trained, {"steps": steps, "stage": stage, "losses": {"feature_cosine": 1.0}, "lr": lr,
                     "batch_size": batch_size, "fake_quantized_linear": n, "loss_first": curve[0][1] if curve else None,
                     "loss_last": curve[-1][1] if curve else None, "seconds": round(state["seconds"], 1)}


@register_method
class TorchAOQATInt8(QuantMethod):
    name = "torchao_qat_int8"
    runtime = "torch"
    packages = ("torchao",)
    extra = "torchao"
    description = "torchao QAT (int8 dyn-act/int8 weight fake quant) + distillation recovery, then int8 dynamic"
    options = {"compile": "time under torch.compile (default true; false: eager)"}
    needs_opt_in = "--qat-steps N"  # auto mode tries it only when the user gives a step budget

    def opted_in(self, cfg) -> bool:
        return cfg.qat_steps is not None

    def quantize(self, ctx, tower: str) -> Candidate:
        from compact.data.sources.reference import reference_base
        from compact.quantize.methods.torchao_int8 import quantize_module
        from compact.quantize.run import torch_runner

        cfg = ctx.cfg
        steps = cfg.qat_steps if cfg.qat_steps is not None else DEFAULT_STEPS
        data = cfg.qat_data or reference_base(cfg.eval_data or "") or reference_base(cfg.calib or "") or "reference"
        trained, report = qat_recover(copy.deepcopy(ctx.model), tower, steps, data, list(ctx.calib.langs),
                                      ctx.work / f"qat-{tower}", batch_size=cfg.qat_batch, lr=cfg.qat_lr,
                                      seed=0, progress=ctx.progress)
        wrapper = type(ctx.towers[tower].module)(trained, normalize=ctx.towers[tower].module.normalize)
        q = quantize_module(wrapper, "int8_dynamic")
        compiled = bool(cfg.method_options.get("compile", True))
        sub = trained.visual if tower == "image" else trained.text
        return Candidate(self.name, tower, torch_runner(q), "int8",
                         details={"config": {"kind": "int8_dynamic"}, "qat": dict(report, data=data),
                                  "compiled_for_latency": compiled},
                         module=q, timed_runner=torch_runner(torch.compile(q, dynamic=False)) if compiled else None,
                         tower_state={k: v.detach().clone() for k, v in sub.state_dict().items()})
