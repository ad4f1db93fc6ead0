"""Training checkpoints in safetensors + JSON (no pickle): model, optimizer state, step and RNG state.

torch's own `torch.save` would pickle the optimizer state; we flatten its tensors into safetensors and keep
the rest (param groups, step counters that are plain numbers) as JSON so a checkpoint can be loaded safely.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import Any, Optional

import torch
from safetensors.torch import load_file, save_file

from compact.errors import CompactError
from compact.utils.faults import failpoint
from compact.utils.io import atomic_dir

MODEL = "model.safetensors"
OPTIM = "optimizer.safetensors"
STATE = "state.json"
FINGERPRINT = "fingerprint"

log = logging.getLogger(__name__)


def owned_work_folder(work: Path, key: dict) -> Path:
    """The work folder of a resumable job (its checkpoints), stamped with a hash of `key` (the model, the config:
    whatever the checkpoints depend on). A folder left by a job with another key, or with no stamp, is stale and
    removed, so a re-run never resumes from checkpoints of something else."""
    work = Path(work)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()
    stamp = work / FINGERPRINT
    if work.is_dir() and not (stamp.is_file() and stamp.read_text().strip() == digest):
        log.info("%s belongs to another model or configuration; starting afresh", work)
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    stamp.write_text(digest + "\n")
    return work


def _flatten_optimizer(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, entry in state["state"].items():
        for key, val in entry.items():
            if isinstance(val, torch.Tensor):
                tensors[f"{idx}.{key}"] = val.detach().contiguous().cpu()
            else:
                scalars.setdefault(str(idx), {})[key] = val
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict[str, Any]] = {}
    for name, val in tensors.items():
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = val
    for idx, entry in meta["scalars"].items():
        state.setdefault(int(idx), {}).update(entry)
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(path: Path, model: torch.nn.Module, optimizer: Optional[torch.optim.Optimizer],
                    step: int, extra: Optional[dict] = None) -> None:
    """Write atomically: a kill during the write leaves the previous checkpoint intact."""
    with atomic_dir(Path(path), overwrite=True) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}, str(tmp / MODEL))
        failpoint("checkpoint.write")
        meta: dict[str, Any] = {"step": step, "extra": extra or {}}
        tensors = {"__torch_rng__": torch.get_rng_state()}
        if optimizer is not None:
            opt_tensors, meta["optimizer"] = _flatten_optimizer(optimizer.state_dict())
            tensors.update(opt_tensors)
        save_file(tensors, str(tmp / OPTIM))
        (tmp / STATE).write_text(json.dumps(meta))
    failpoint("checkpoint.saved")


def load_checkpoint(path: Path, model: torch.nn.Module, optimizer: Optional[torch.optim.Optimizer]) -> dict:
    """Restore in place; returns {"step": ..., "extra": ...}."""
    path = Path(path)
    try:
        meta = json.loads((path / STATE).read_text())
        model.load_state_dict(load_file(str(path / MODEL)))
        tensors = load_file(str(path / OPTIM))
    except (OSError, ValueError, RuntimeError, json.JSONDecodeError) as e:
        raise CompactError(f"checkpoint {path} is unreadable ({str(e).splitlines()[0]}); delete it to start over") from None
    torch.set_rng_state(tensors.pop("__torch_rng__"))
    if optimizer is not None and "optimizer" in meta:
        optimizer.load_state_dict(_unflatten_optimizer(tensors, meta["optimizer"]))
    return {"step": int(meta["step"]), "extra": meta.get("extra", {})}
