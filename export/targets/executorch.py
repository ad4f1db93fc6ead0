"""ExecuTorch: a `.pte` program per tower, lowered to the XNNPACK backend, for Android/iOS/embedded CPUs.

`torch.export` with bounded dynamic batch and sequence (ExecuTorch needs upper bounds to plan memory), then
`to_edge_transform_and_lower` with the XNNPACK partitioner. Parity runs the `.pte` in ExecuTorch's own runtime
(`executorch.runtime`), so what is checked is the program a device would load.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch

from compact.errors import CompactError
from compact.utils.io import raise_if_disk_full
from export.targets import Artifact, ExportTarget, Runner, register_target
from export.towers import Tower


def export_program(tower: Tower):
    dyn = {n: {i: torch.export.Dim(v[0], min=v[1], max=v[2]) for i, v in tower.dynamic.get(n, {}).items()} or None
           for n in tower.input_names}
    with torch.no_grad():
        return torch.export.export(tower.module, tower.example, dynamic_shapes=dyn if tower.dynamic else None)


@register_target
class ExecuTorchTarget(ExportTarget):
    name = "executorch"
    description = "ExecuTorch .pte lowered to XNNPACK (Android, iOS, embedded Linux)"
    packages = ("executorch",)
    extra = "executorch"

    def export(self, tower: Tower, out: Path, cfg) -> list[Artifact]:
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower

        try:
            program = export_program(tower)
            lowered = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
            et = lowered.to_executorch()
        except Exception as e:  # exir raises its own error types for unsupported ops
            raise_if_disk_full(e)  # a full disk is not a conversion problem
            raise CompactError(f"ExecuTorch cannot lower the {tower.name} tower: "
                               f"{str(e).strip().splitlines()[0][:300]}; try `compact export onnx`") from None
        path = out / f"{tower.name}.pte"
        path.write_bytes(et.buffer)
        delegated, total = _delegation(lowered)
        details = {"backend": "xnnpack", "delegated_nodes": delegated, "graph_nodes": total,
                   "parity_runtime": "executorch runtime (XNNPACK)"}
        return [Artifact(path.name, tower.name, "fp32", details)]

    def runner(self, artifact: Artifact, bundle: Path, cfg) -> Optional[Runner]:
        from executorch.runtime import Runtime

        method = Runtime.get().load_program(str(bundle / artifact.path)).load_method("forward")
        order = ("pixel_values",) if artifact.tower == "image" else ("input_ids", "attention_mask")

        def run(feeds: dict[str, np.ndarray]) -> np.ndarray:
            outs = method.execute([torch.from_numpy(np.ascontiguousarray(feeds[k])) for k in order])
            return outs[0].numpy() if hasattr(outs[0], "numpy") else np.asarray(outs[0])

        return run


def _delegation(lowered) -> tuple[int, int]:
    """(nodes inside XNNPACK delegates, all call nodes) of the lowered graph: what runs accelerated."""
    gm = lowered.exported_program().graph_module
    calls = [n for n in gm.graph.nodes if n.op == "call_function"]
    delegated = sum(1 for n in calls if "executorch_call_delegate" in str(n.target))
    return delegated, len(calls)
