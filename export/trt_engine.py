"""TensorRT engines from TRT-ready ONNX: build (Python API or `trtexec`), run, and the trtexec command line.

Written by hand against the TensorRT 10 Python API rather than through polygraphy's TRT backend, because the
build needs things polygraphy would hide from the manifest: the parser's per-node errors, the timing cache
(loaded, merged with what is on disk, saved back) and the exact profiles. Buffers are torch CUDA tensors (torch
is already a dependency), so pycuda / cuda-python are not needed.

`tensorrt` is imported inside the functions only: this module imports on machines without it (TensorRT cannot
be installed from PyPI alone), and `trtexec_args` / `build_engine.sh` work there.

Profiles are `{input name: {"min": [...], "opt": [...], "max": [...]}}`, one entry per input with a dynamic
axis; inputs with fully static shapes are left out.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from compact.errors import CompactError

log = logging.getLogger(__name__)

Profiles = dict[str, dict[str, list[int]]]
PRECISIONS = ("fp32", "fp16", "int8")
# Where NVIDIA's containers and packages put trtexec when it is not on PATH.
TRTEXEC_LOCATIONS = ("/usr/src/tensorrt/bin/trtexec", "/opt/tensorrt/bin/trtexec")


def tensorrt_version() -> Optional[str]:
    """The installed TensorRT version, or None when `tensorrt` does not import."""
    try:
        import tensorrt as trt
    except Exception:  # ImportError, or a broken install (missing libnvinfer) raising OSError
        return None
    return str(trt.__version__)


def engine_support() -> tuple[bool, str]:
    """(True, GPU name) when engines can be built and run here, else (False, the reason)."""
    if tensorrt_version() is None:
        return False, "tensorrt does not import here"
    import torch

    if not torch.cuda.is_available():
        return False, "no CUDA device here"
    return True, torch.cuda.get_device_name()


def trtexec_path() -> Optional[str]:
    """The trtexec binary: $TRTEXEC, PATH, or NVIDIA's install locations; None when there is none."""
    env = os.environ.get("TRTEXEC")
    if env and Path(env).is_file():
        return env
    found = shutil.which("trtexec")
    if found:
        return found
    return next((p for p in TRTEXEC_LOCATIONS if os.access(p, os.X_OK)), None)


def trtexec_available() -> bool:
    return trtexec_path() is not None


def _check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise CompactError(f"TensorRT precision {precision!r} is not one of {', '.join(PRECISIONS)}")


def _shape_arg(profiles: Profiles, key: str) -> str:
    return ",".join(f"{name}:{'x'.join(str(int(d)) for d in p[key])}" for name, p in profiles.items())


def trtexec_args(onnx_path: str, engine_path: str, profiles: Profiles, precision: str = "fp16",
                 timing_cache: Optional[str] = None, workspace_gb: Optional[float] = None) -> list[str]:
    """trtexec's arguments (without the binary) for one engine; shared by `build_engine.sh` and
    `build_with_trtexec`. int8 means explicit quantization: the ONNX must carry QDQ nodes, and the network is
    built strongly typed (the QDQ nodes and the graph's own dtypes decide each layer's precision)."""
    _check_precision(precision)
    args = [f"--onnx={onnx_path}", f"--saveEngine={engine_path}"]
    if precision == "fp16":
        args.append("--fp16")
    elif precision == "int8":
        args.append("--stronglyTyped")
    if profiles:
        args += [f"--minShapes={_shape_arg(profiles, 'min')}", f"--optShapes={_shape_arg(profiles, 'opt')}",
                 f"--maxShapes={_shape_arg(profiles, 'max')}"]
    if timing_cache:
        args.append(f"--timingCacheFile={timing_cache}")
    if workspace_gb:
        args.append(f"--memPoolSize=workspace:{int(workspace_gb * 1024)}")  # MiB
    args.append("--skipInference")
    return args


def build_with_trtexec(onnx_path: Path, engine_path: Path, profiles: Profiles, precision: str = "fp16",
                       timing_cache: Optional[Path] = None, workspace_gb: Optional[float] = None,
                       timeout_s: float = 3600) -> dict:
    """Build with the `trtexec` binary (when the Python API is absent but trtexec is installed)."""
    exe = trtexec_path()
    if exe is None:
        raise CompactError("trtexec is not on PATH; install TensorRT (or set TRTEXEC=/path/to/trtexec)")
    cache_before = timing_cache.stat().st_size if timing_cache and timing_cache.is_file() else 0
    cmd = [exe, *trtexec_args(str(onnx_path), str(engine_path), profiles, precision,
                              str(timing_cache) if timing_cache else None, workspace_gb)]
    log.info("building %s: %s", engine_path.name, " ".join(cmd))
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise CompactError(f"trtexec did not finish building {engine_path.name} within {timeout_s:.0f} s; "
                           "raise the timeout or build with build_engine.sh") from None
    if proc.returncode != 0 or not engine_path.is_file():
        lines = (proc.stdout + proc.stderr).splitlines()
        errors = [ln for ln in lines if "[E]" in ln] or lines[-3:]
        raise CompactError(f"trtexec failed to build {engine_path.name} from {onnx_path.name}: "
                           f"{' | '.join(e.strip() for e in errors[:3])}")
    return {"builder": "trtexec", "trtexec": exe, "precision": precision,
            "seconds": round(time.perf_counter() - t0, 2), "engine_bytes": engine_path.stat().st_size,
            "timing_cache": None if timing_cache is None else {
                "path": str(timing_cache), "loaded": cache_before > 0, "bytes_loaded": cache_before,
                "bytes_saved": timing_cache.stat().st_size if timing_cache.is_file() else 0}}


def _logger():
    import tensorrt as trt

    return trt.Logger(trt.Logger.WARNING)


def _parser_errors(parser) -> str:
    """The ONNX parser's errors, each with its node (name and op) where TensorRT reports them."""
    out = []
    for i in range(parser.num_errors):
        err = parser.get_error(i)
        node = err.node_name() if hasattr(err, "node_name") else ""
        op = err.node_operator() if hasattr(err, "node_operator") else ""
        where = f"{op} node {node!r}" if node or op else f"node #{err.node()}"
        out.append(f"{where}: {err.desc()}")
    return "; ".join(out) or "no error detail from the parser"


def _has_qdq(onnx_path: Path) -> bool:
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    return any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node)


def build_engine(onnx_path: Path, engine_path: Path, profiles: Profiles, precision: str = "fp16",
                 timing_cache: Optional[Path] = None, workspace_gb: float = 4.0) -> dict:
    """Build a serialized engine with the TensorRT 10 Python API; returns the facts for the manifest.

    fp16 and fp32 build a weakly typed network (fp16 lets TensorRT choose half precision per layer); int8 needs
    QDQ nodes in the ONNX and builds strongly typed (explicit quantization). The timing cache at
    `timing_cache` is loaded when it exists, and saved back merged with whatever was written there meanwhile.
    """
    import tensorrt as trt

    _check_precision(precision)
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    strongly_typed = precision == "int8"
    if strongly_typed and not _has_qdq(onnx_path):
        raise CompactError(f"{onnx_path.name} has no QuantizeLinear/DequantizeLinear nodes, so no int8 engine can "
                           "be built from it; quantize first (`compact quantize` or nvidia-modelopt's ONNX PTQ)")
    logger = _logger()
    builder = trt.Builder(logger)
    flags = 0
    if strongly_typed:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    if int(trt.__version__.split(".")[0]) < 10:  # explicit batch is the only mode (and the default) from TRT 10
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        raise CompactError(f"TensorRT {trt.__version__} cannot parse {onnx_path.name}: {_parser_errors(parser)}; "
                           "re-export with a supported opset or simplify the named node")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)

    dynamic = []
    for i in range(network.num_inputs):
        t = network.get_input(i)
        if any(d < 0 for d in t.shape):
            dynamic.append(t.name)
    if dynamic:
        missing = [n for n in dynamic if n not in profiles]
        if missing:
            raise CompactError(f"{onnx_path.name} has dynamic inputs without an optimization profile: "
                               f"{', '.join(missing)}; pass min/opt/max shapes for them")
        profile = builder.create_optimization_profile()
        for name in dynamic:
            p = profiles[name]
            profile.set_shape(name, tuple(p["min"]), tuple(p["opt"]), tuple(p["max"]))
        config.add_optimization_profile(profile)

    loaded = b""
    if timing_cache is not None and Path(timing_cache).is_file():
        loaded = Path(timing_cache).read_bytes()
    cache = config.create_timing_cache(loaded)
    config.set_timing_cache(cache, False)

    t0 = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    seconds = time.perf_counter() - t0
    if serialized is None:
        raise CompactError(f"TensorRT {trt.__version__} failed to build an engine from {onnx_path.name} "
                           f"({precision}); rerun with TensorRT's verbose log (trtexec --verbose) for the layer")
    engine_path.write_bytes(bytes(memoryview(serialized)))

    cache_info = None
    if timing_cache is not None:
        cache_info = {"path": str(timing_cache), "loaded": bool(loaded), "bytes_loaded": len(loaded),
                      "bytes_saved": _save_timing_cache(config, Path(timing_cache))}
    log.info("built %s (%s) in %.1f s", engine_path.name, precision, seconds)
    return {"builder": "tensorrt-python", "tensorrt": str(trt.__version__), "precision": precision,
            "strongly_typed": strongly_typed, "seconds": round(seconds, 2),
            "engine_bytes": engine_path.stat().st_size, "profiles": {n: profiles[n] for n in dynamic},
            "timing_cache": cache_info}


def _save_timing_cache(config, path: Path) -> int:
    """Write the build's timing cache to `path`, merged with the file's current content (another build may have
    added entries since it was loaded); returns the bytes written."""
    cache = config.get_timing_cache()
    if path.is_file():
        on_disk = config.create_timing_cache(path.read_bytes())
        if not cache.combine(on_disk, False):
            log.warning("could not merge the timing cache on disk at %s (other TensorRT version or GPU); "
                        "overwriting it", path)
    data = bytes(memoryview(cache.serialize()))
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return len(data)


class TrtRunner:
    """Runs a serialized engine: numpy feeds in, the first output as numpy out. Device buffers are torch CUDA
    tensors; each call sets the input shapes (within the engine's profile 0) and runs on its own stream."""

    def __init__(self, engine_path: Path, device: int = 0):
        import tensorrt as trt
        import torch

        if not torch.cuda.is_available():
            raise CompactError("TensorRT engines need a CUDA GPU and none is visible here; run on a GPU machine")
        self.device = torch.device("cuda", device)
        self.logger = _logger()
        self.runtime = trt.Runtime(self.logger)
        self.engine = self.runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
        if self.engine is None:
            raise CompactError(f"TensorRT {trt.__version__} cannot load {Path(engine_path).name}: engines only run "
                               "on the TensorRT version and GPU model that built them; rebuild with build_engine.sh")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self.dtypes = {n: _torch_dtype(self.engine.get_tensor_dtype(n)) for n in names}
        self.stream = torch.cuda.Stream(device=self.device)

    def profile_range(self, name: str) -> tuple[list[int], list[int]]:
        mn, _opt, mx = self.engine.get_tensor_profile_shape(name, 0)
        return list(mn), list(mx)

    def _check_shape(self, name: str, shape: Sequence[int]) -> None:
        declared = list(self.engine.get_tensor_shape(name))
        if len(declared) != len(shape):
            raise CompactError(f"input {name} has rank {len(shape)}, the engine expects {len(declared)}")
        if any(d < 0 for d in declared):
            mn, mx = self.profile_range(name)
            if any(s < lo or s > hi for s, lo, hi in zip(shape, mn, mx)):
                raise CompactError(f"input {name} shape {list(shape)} is outside the engine's profile "
                                   f"{mn}..{mx}; rebuild with larger --maxShapes or feed smaller batches")
        elif list(shape) != declared:
            raise CompactError(f"input {name} shape {list(shape)} differs from the engine's static {declared}")

    def __call__(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        return self.run(feeds)[self.outputs[0]]

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        missing = [n for n in self.inputs if n not in feeds]
        if missing:
            raise CompactError(f"the engine needs inputs {', '.join(missing)}")
        with torch.cuda.stream(self.stream):
            keep = []
            for name in self.inputs:
                x = np.ascontiguousarray(feeds[name])
                self._check_shape(name, x.shape)
                t = torch.from_numpy(x).to(self.device, self.dtypes[name], non_blocking=False).contiguous()
                keep.append(t)
                if not self.context.set_input_shape(name, tuple(x.shape)):
                    raise CompactError(f"TensorRT rejected the shape {list(x.shape)} for input {name}")
                self.context.set_tensor_address(name, t.data_ptr())
            outs = {}
            for name in self.outputs:
                shape = tuple(self.context.get_tensor_shape(name))
                if any(d < 0 for d in shape):
                    raise CompactError(f"TensorRT could not infer the shape of output {name} from the inputs")
                outs[name] = torch.empty(shape, dtype=self.dtypes[name], device=self.device)
                self.context.set_tensor_address(name, outs[name].data_ptr())
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise CompactError("TensorRT failed to run the engine (execute_async_v3 returned False)")
        self.stream.synchronize()
        return {n: t.float().cpu().numpy() if t.dtype in (torch.float16, torch.bfloat16) else t.cpu().numpy()
                for n, t in outs.items()}


def _torch_dtype(dt):
    import tensorrt as trt
    import torch

    table = {"FLOAT": torch.float32, "HALF": torch.float16, "BF16": torch.bfloat16, "INT32": torch.int32,
             "INT64": torch.int64, "INT8": torch.int8, "UINT8": torch.uint8, "BOOL": torch.bool}
    for name, torch_dtype in table.items():
        if hasattr(trt.DataType, name) and dt == getattr(trt.DataType, name):
            return torch_dtype
    raise CompactError(f"engine tensor type {dt} has no torch equivalent here")
