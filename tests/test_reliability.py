"""Faults and concurrent writers: one compact process per output folder, no stale locks after kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from compact.cli.main import cli
from compact.errors import CompactError
from compact.utils.io import lock_path, output_lock
from helpers import killed_at

HOLD = """
import sys, time
from pathlib import Path
from compact.utils.io import output_lock
with output_lock(Path(sys.argv[1])):
    print("locked", flush=True)
    time.sleep(60)
"""


def _holder(out):
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_second_writer_gets_the_holders_pid_and_a_killed_holder_leaves_no_stale_lock(tmp_path):
    out = tmp_path / "bundle"
    proc = _holder(out)
    try:
        with pytest.raises(CompactError, match=rf"being written by another compact process \(pid {proc.pid}\)"):
            with output_lock(out):
                pass
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert lock_path(out).read_text().strip() == str(proc.pid)  # the dead holder's file is still there ...
    with output_lock(out):  # ... and is taken over: the kernel dropped the flock with the process
        assert lock_path(out).read_text().strip() == str(os.getpid())
    assert not lock_path(out).exists()  # removed on a clean exit


def test_a_waiting_lock_blocks_until_the_holder_dies_then_takes_over(tmp_path):
    """`output_lock(wait=True)` (the shared reference cache): the second process waits instead of failing."""
    import threading

    out = tmp_path / "reference"
    proc = _holder(out)
    got = []

    def take():
        with output_lock(out, wait=True):
            got.append(lock_path(out).read_text().strip())

    t = threading.Thread(target=take)
    t.start()
    t.join(1.0)
    assert t.is_alive() and not got  # still waiting on the holder
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    t.join(30)
    assert got == [str(os.getpid())] and not lock_path(out).exists()


def test_lock_is_reentrant_in_one_process(tmp_path):
    with output_lock(tmp_path / "x"):
        with output_lock(tmp_path / "x"):
            assert lock_path(tmp_path / "x").is_file()
        assert lock_path(tmp_path / "x").is_file()
    assert not lock_path(tmp_path / "x").exists()


def test_cli_export_into_a_folder_another_run_is_writing(tmp_path):
    from helpers import tiny_compact

    from compact.models.folder import save_model

    save_model(tiny_compact(), tmp_path / "m")
    out = tmp_path / "bundle"
    proc = _holder(out)
    try:
        t0 = time.perf_counter()
        res = CliRunner().invoke(cli, ["export", "onnx", str(tmp_path / "m"), "-o", str(out)])
        assert time.perf_counter() - t0 < 30  # refused at once, not after exporting
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert res.exit_code != 0
    assert f"pid {proc.pid}" in res.output and "Traceback" not in res.output
    assert not out.exists()


# Hostile and broken model files: a clear error, and nothing in them runs.

def _pickle_only_hf(tmp_path):
    import torch
    from helpers import hf_tiny_clip
    from safetensors.torch import load_file

    folder = hf_tiny_clip(tmp_path / "hf")
    state = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    torch.save(state, folder / "pytorch_model.bin")
    return folder


def _evil_pickle(path, marker):
    import pickle

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    with open(path, "wb") as f:
        pickle.dump({"weight": Evil()}, f)


def test_pickle_checkpoint_is_refused_unless_allowed_and_then_read_weights_only(tmp_path):
    import torch

    from compact.errors import TeacherError
    from compact.models.teachers import TeacherOptions, load_teacher

    folder = _pickle_only_hf(tmp_path)
    with pytest.raises(TeacherError, match=r"pickle-based weights only \(pytorch_model.bin\).*--allow-pickle"):
        load_teacher(str(folder))
    allowed = load_teacher(str(folder), TeacherOptions(allow_pickle=True))
    from helpers import hf_tiny_clip

    ref = load_teacher(str(hf_tiny_clip(tmp_path / "ref")))
    with torch.no_grad():
        assert torch.allclose(allowed.embed_texts(["a red star"]), ref.embed_texts(["a red star"]))
    marker = tmp_path / "pwned"
    _evil_pickle(folder / "pytorch_model.bin", marker)
    with pytest.raises(TeacherError, match="nothing in it ran"):
        load_teacher(str(folder), TeacherOptions(allow_pickle=True))
    assert not marker.exists()


def test_open_clip_pickle_checkpoint_is_refused_and_a_malicious_one_never_runs(tmp_path):
    from compact.errors import TeacherError
    from compact.models.teachers import TeacherOptions, load_teacher

    marker = tmp_path / "pwned"
    ckpt = tmp_path / "evil.pt"
    _evil_pickle(ckpt, marker)
    with pytest.raises(TeacherError, match="pickle-based checkpoint.*--allow-pickle"):
        load_teacher(f"open_clip:ViT-B-32@{ckpt}")
    with pytest.raises(TeacherError, match="nothing in it ran"):
        load_teacher(f"open_clip:ViT-B-32@{ckpt}", TeacherOptions(allow_pickle=True))
    assert not marker.exists()


def test_cli_allow_pickle_is_a_global_flag(tmp_path):
    folder = _pickle_only_hf(tmp_path)
    res = CliRunner().invoke(cli, ["export", "onnx", str(folder), "-o", str(tmp_path / "b"), "--no-compare-shapes"])
    assert res.exit_code != 0 and "--allow-pickle" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "b").exists()
    ok = CliRunner().invoke(cli, ["--allow-pickle", "export", "onnx", str(folder), "-o", str(tmp_path / "b"),
                                  "--no-compare-shapes"])
    assert ok.exit_code == 0, ok.output
    assert (tmp_path / "b" / "manifest.json").is_file()


def _external_onnx(folder, location):
    """A one-initializer ONNX graph whose tensor lives in external data at `location`."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    folder.mkdir(parents=True, exist_ok=True)
    w = numpy_helper.from_array(np.arange(4, dtype=np.float32), "w")
    graph = helper.make_graph([helper.make_node("Identity", ["w"], ["y"])], "g", [],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    path = folder / "m.onnx"
    onnx.save_model(model, str(path), save_as_external_data=True, location="m.onnx.data", size_threshold=0)
    m = onnx.load(str(path), load_external_data=False)
    for e in m.graph.initializer[0].external_data:
        if e.key == "location":
            e.value = location
    onnx.save_model(m, str(path))
    return path


@pytest.mark.parametrize("location", ["../../secret.bin", "/etc/passwd", "sub/../../x.bin"])
def test_onnx_external_data_outside_the_folder_is_refused(tmp_path, location):
    pytest.importorskip("onnxruntime")
    from export.targets.onnx import ort_session

    path = _external_onnx(tmp_path / "model", location)
    with pytest.raises(CompactError, match="points outside its folder"):
        ort_session(path)


def test_onnx_external_data_through_a_symlink_out_is_refused_and_a_good_one_runs(tmp_path):
    pytest.importorskip("onnxruntime")
    import numpy as np

    from export.targets.onnx import ort_session

    good = _external_onnx(tmp_path / "good", "m.onnx.data")
    np.testing.assert_array_equal(ort_session(good).run(None, {})[0], np.arange(4, dtype=np.float32))
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "m.onnx.data").write_bytes((tmp_path / "good" / "m.onnx.data").read_bytes())
    bad = _external_onnx(tmp_path / "bad", "link/m.onnx.data")
    (tmp_path / "bad" / "link").symlink_to(tmp_path / "outside")
    with pytest.raises(CompactError, match="resolves outside its folder"):
        ort_session(bad)


def _bundle_with(tmp_path, **manifest):
    import json

    b = tmp_path / "bundle"
    b.mkdir()
    base = {"format": "compact-export", "version": 1, "target": "onnx", "embed_dim": 32,
            "files": [{"path": "image.onnx", "tower": "image"}]}
    (b / "manifest.json").write_text(json.dumps({**base, **manifest}))
    return b


@pytest.mark.parametrize("bad, match", [
    ({"files": [{"path": "../../etc/passwd", "tower": "image"}]}, "points outside"),
    ({"files": [{"path": "/etc/passwd", "tower": "image"}]}, "points outside"),
    ({"files": [{"path": 3, "tower": "image"}]}, "string 'path'"),
    ({"files": "image.onnx"}, "non-empty list"),
    ({"embed_dim": "512"}, "embed_dim must be an integer"),
    ({"embed_dim": 10 ** 30}, "embed_dim must be an integer"),
    ({"preprocess": [1, 2]}, "'preprocess' must be an object"),
])
def test_hostile_manifest_fields_are_refused(tmp_path, bad, match):
    from export.bundle import read_manifest

    with pytest.raises(CompactError, match=match):
        read_manifest(_bundle_with(tmp_path, **bad))


def test_deeply_nested_or_binary_manifest_is_one_line(tmp_path):
    from export.bundle import read_manifest

    b = tmp_path / "deep"
    b.mkdir()
    (b / "manifest.json").write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(CompactError, match="nested too deeply|not a compact export manifest"):
        read_manifest(b)
    (b / "manifest.json").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(CompactError, match="not UTF-8|not valid JSON"):
        read_manifest(b)


def test_cli_bench_on_a_hostile_bundle_is_one_line(tmp_path):
    b = _bundle_with(tmp_path, files=[{"path": "../../../etc/passwd", "tower": "image"}])
    res = CliRunner().invoke(cli, ["bench", "run", str(b), "--runtime", "onnxruntime", "-o", str(tmp_path / "r")])
    assert res.exit_code != 0 and "points outside" in res.output and "Traceback" not in res.output


# Hostile data: tar members that would escape a folder are skipped and reported; nothing is ever extracted.

def _png():
    import io as _io

    from PIL import Image

    buf = _io.BytesIO()
    Image.new("RGB", (4, 4), (200, 10, 10)).save(buf, "PNG")
    return buf.getvalue()


def test_webdataset_links_and_escaping_names_are_skipped_and_reported(tmp_path, caplog):
    import io as _io
    import tarfile

    from compact.data.sources import open_eval_data

    shard = tmp_path / "hostile.tar"
    with tarfile.open(shard, "w") as tar:
        def add(name, blob=b"", kind=tarfile.REGTYPE, link=""):
            info = tarfile.TarInfo(name)
            info.type, info.linkname, info.size = kind, link, len(blob)
            tar.addfile(info, _io.BytesIO(blob) if kind == tarfile.REGTYPE else None)

        add("000.png", _png())
        add("000.txt", b"a red square")
        add("../evil.png", _png())
        add("../evil.txt", b"escaped")
        add("/abs/001.txt", b"absolute")
        add("002.png", kind=tarfile.SYMTYPE, link="/etc/passwd")
        add("002.txt", b"a link")
        add("003.png", kind=tarfile.LNKTYPE, link="000.png")
    before = set(tmp_path.parent.iterdir())
    with caplog.at_level("WARNING"):
        data = open_eval_data(shard)
    assert [data.images.key(i) for i in range(len(data.images))] == ["000"]
    assert data.pairs == {"en": [(0, "a red square")]}
    msg = " ".join(r.getMessage() for r in caplog.records)
    assert "skipped 5 unsafe member(s)" in msg and "'../evil.png'" in msg and "symlink" in msg
    assert set(tmp_path.parent.iterdir()) == before and not (tmp_path / "evil.png").exists()


def test_coreml_package_with_a_path_escape_is_refused(tmp_path):
    import json

    from export.targets.coreml import check_package_paths

    pkg = tmp_path / "image.mlpackage"
    (pkg / "Data" / "com.apple.CoreML").mkdir(parents=True)
    entries = {"A": {"path": "com.apple.CoreML/model.mlmodel", "name": "model.mlmodel"}}
    (pkg / "Manifest.json").write_text(json.dumps({"itemInfoEntries": entries, "rootModelIdentifier": "A"}))
    check_package_paths(pkg)  # a well-formed package passes
    for bad in ("../../../etc/passwd", "/etc/passwd"):
        entries["B"] = {"path": bad, "name": "weights"}
        (pkg / "Manifest.json").write_text(json.dumps({"itemInfoEntries": entries}))
        with pytest.raises(CompactError, match="points outside its folder"):
            check_package_paths(pkg)
    (pkg / "Manifest.json").write_text("[" * 100_000)
    with pytest.raises(CompactError, match="cannot be read as a Core ML package.*not a package manifest"):
        check_package_paths(pkg)


def test_safetensors_header_that_lies_about_sizes_is_a_one_line_error(tmp_path):
    import json
    import struct

    from helpers import tiny_compact

    from compact.models.folder import load_model, save_model

    folder = tmp_path / "m"
    save_model(tiny_compact(), folder)
    header = json.dumps({"visual.proj.weight": {"dtype": "F32", "shape": [1 << 20, 1 << 10],
                                                "data_offsets": [0, 4 << 30]}}).encode()
    (folder / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 16)
    with pytest.raises(CompactError, match="corrupt"):
        load_model(folder)
    res = CliRunner().invoke(cli, ["export", "onnx", str(folder), "-o", str(tmp_path / "b")])
    assert res.exit_code != 0 and "corrupt" in res.output and "Traceback" not in res.output


# SIGKILL mid-stage: nothing partial under the final name, a re-run finishes, and its result equals an
# uninterrupted run's.

def _kill_when(cmd, ready, timeout=300.0):
    """Run `cmd`; SIGKILL it as soon as `ready()` holds. Returns True if it was killed (False: it finished
    before `ready` held, so the test could not interrupt it)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            return False
        if ready():
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.01)
    proc.kill()
    raise AssertionError(f"{cmd} did not reach the kill point in {timeout} s")


def _feeds(path):
    """Fixed inputs for a graph: batch 2 (and length 2 for a dynamic text axis)."""
    import numpy as np
    import onnxruntime as ort

    feeds = {}
    for i in ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_inputs():
        shape = [2 if not isinstance(d, int) else d for d in i.shape]
        if i.name == "pixel_values":
            feeds[i.name] = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        else:
            feeds[i.name] = np.full(shape, 5 if i.name == "input_ids" else 1, dtype=np.int64)
    return feeds


def _outputs(bundle, name):
    import onnxruntime as ort

    sess = ort.InferenceSession(str(bundle / name), providers=["CPUExecutionProvider"])
    return sess.run(None, _feeds(bundle / name))[0]


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    from helpers import tiny_compact

    from compact.models.folder import save_model

    folder = tmp_path_factory.mktemp("kill") / "tiny"
    save_model(tiny_compact(), folder)
    return folder


CLI = [sys.executable, "-m", "compact.cli.main"]


def test_export_killed_mid_write_leaves_nothing_and_reruns_to_the_same_bundle(tiny_folder, tmp_path):
    pytest.importorskip("onnxruntime")
    import numpy as np

    import torch

    from compact.models.folder import load_model
    from export.towers import prepare, towers

    out = tmp_path / "out"
    cmd = [*CLI, "export", "onnx", str(tiny_folder), "--no-compare-shapes", "-o"]
    # Mid-export: the temporary folder has its first graph, the manifest is not written yet.
    killed = _kill_when([*cmd, str(out)], lambda: any((t / "image.onnx").exists() for t in tmp_path.glob(".out.tmp-*")))
    assert killed, "the export finished before it could be killed"
    assert not out.exists() and list(tmp_path.glob(".out.tmp-*"))  # nothing under the final name
    subprocess.run([*cmd, str(out)], check=True, capture_output=True)
    assert not list(tmp_path.glob(".out.tmp-*")) and not list(tmp_path.glob(".out.lock"))  # leftovers cleaned
    # The re-run's graphs compute the model (against torch, not a third export: each costs ~20 s of CI).
    want = {}
    for t in towers(prepare(load_model(tiny_folder))):
        feeds = _feeds(out / f"{t.name}.onnx")
        with torch.no_grad():
            want[f"{t.name}.onnx"] = t.module(*(torch.from_numpy(feeds[n]) for n in t.input_names)).numpy()
    for name in ("image.onnx", "text.onnx"):
        np.testing.assert_allclose(_outputs(out, name), want[name], atol=1e-5)


def test_quantize_killed_mid_run_leaves_nothing_and_reruns_to_the_same_result(tiny_folder, tmp_path):
    pytest.importorskip("onnxruntime")
    import json

    import numpy as np

    ref, out = tmp_path / "ref", tmp_path / "out"
    cmd = [*CLI, "quantize", str(tiny_folder), "--method", "ort_dynamic_int8", "--eval-data", "", "--force",
           "--calib-images", "8", "--timing-seconds", "0.5", "-o"]
    subprocess.run([*cmd, str(ref)], check=True, capture_output=True)
    killed_at([*cmd, str(out)], "quantize.candidate:1")  # the image tower's candidate done, the text one not
    assert not out.exists()
    subprocess.run([*cmd, str(out)], check=True, capture_output=True)
    a, b = (json.loads((d / "report.json").read_text()) for d in (ref, out))
    assert a["choice"] == b["choice"] == {"image": "ort_dynamic_int8", "text": "ort_dynamic_int8"}
    files = [f["path"] for f in json.loads((ref / "bundle" / "manifest.json").read_text())["files"]]
    assert files == [f["path"] for f in json.loads((out / "bundle" / "manifest.json").read_text())["files"]]
    for name in files:
        np.testing.assert_allclose(_outputs(out / "bundle", name), _outputs(ref / "bundle", name), atol=1e-6)


@pytest.mark.parametrize("edit, match", [
    ({"vision": {"width": 1 << 22, "heads": 1}}, "does not match config.json"),  # meta skeleton: nothing allocated
    ({"embed_dim": 10 ** 30}, "not a valid int in 1"),
    ({"text": {"heads": [1, "x"]}}, "not a valid Union"),
    ({"vision": {"type": "timm", "timm_name": "no_such_net"}}, "timm_name 'no_such_net'"),
    ({"vision": []}, "must be a JSON object"),
])
def test_model_config_with_huge_or_wrong_values_is_refused(tmp_path, edit, match):
    import json

    from helpers import tiny_compact

    from compact.models.folder import load_model, save_model

    model = tiny_compact()
    save_model(model, tmp_path / "m")
    cfg = model.cfg.to_dict()
    for k, v in edit.items():
        if isinstance(v, dict):
            cfg[k].update(v)
        else:
            cfg[k] = v
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CompactError, match=match):
        load_model(tmp_path / "m")


@pytest.mark.slow
def test_prune_killed_in_its_second_recovery_resumes_to_the_same_weights(quick_reference, tmp_path):
    """Iterative prune with recovery, killed at the first checkpoint of the second recovery: nothing under the final
    name; the re-run reads the finished first recovery back, resumes the second from its checkpoint and ends on the
    uninterrupted run's weights; the work folder is gone afterwards."""
    import torch
    from safetensors.torch import load_file

    cmd = [*CLI, "prune", "reference-quick", "--keep", "0.5", "--schedule", "iterative", "--iterations", "2",
           "--recover-steps", "20", "--recover-batch", "32", "--langs", "en", "--calib", "reference-quick:val",
           "--calib-limit", "100",
           "--eval-data", "", "--no-latency", "-o"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    subprocess.run([*cmd, str(tmp_path / "ref")], check=True, capture_output=True, env=env)
    out = tmp_path / "out"
    killed_at([*cmd, str(out)], "checkpoint.saved:3")  # saves per recovery: steps 5 and 10 (done)
    work = tmp_path / ".out.work"
    assert not out.exists()
    assert (work / "recovered-0" / "model.safetensors").is_file() and (work / ".recovered-1.work").is_dir()
    r = subprocess.run([*CLI, "-v", *cmd[3:], str(out)], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "recovery 1 finished before the interruption" in r.stderr and "resuming at stage 0 step 5" in r.stderr
    a, b = load_file(str(tmp_path / "ref" / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].shape == b[k].shape and torch.allclose(a[k], b[k], atol=1e-5), k
    assert not work.exists()


def test_bench_killed_after_its_first_result_leaves_nothing_and_reruns(tiny_folder, tmp_path):
    """`compact bench run` killed after its first (bundle, runtime) pair: no report folder under the final name;
    the re-run writes every report with the same pairs; a non-empty -o needs --overwrite (refused before any
    timing); another run writing -o is named by pid."""
    pytest.importorskip("onnxruntime")
    import json

    bundle = tmp_path / "b"
    subprocess.run([*CLI, "export", "onnx", str(tiny_folder), "--no-compare-shapes", "-o", str(bundle)], check=True,
                   capture_output=True)
    out = tmp_path / "r"
    cmd = [*CLI, "bench", "run", str(bundle), "--runtime", "onnxruntime", "--runtime", "torch", "--batch", "1",
           "--iters", "5", "-o", str(out)]
    killed_at(cmd, "bench.result:1")
    assert not out.exists() and list(tmp_path.glob(".r.tmp-*"))
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert not list(tmp_path.glob(".r.tmp-*")) and not lock_path(out).exists()
    rep = json.loads((out / "report.json").read_text())
    assert sorted(x["runtime"] for x in rep["results"]) == ["onnxruntime", "torch"]
    assert all(b["p50_ms"] > 0 for x in rep["results"] for t in x["towers"].values() for b in t["batches"])
    before = sorted(p.name for p in out.iterdir())
    assert {"report.json", "report.csv", "report.md", "latency.png"} <= set(before)

    res = CliRunner().invoke(cli, cmd[3:])
    assert res.exit_code == 1 and "--overwrite" in res.output and "Traceback" not in res.output
    assert sorted(p.name for p in out.iterdir()) == before
    proc = _holder(out)
    try:
        res = CliRunner().invoke(cli, [*cmd[3:], "--overwrite"])
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert res.exit_code == 1 and f"pid {proc.pid}" in res.output
    assert sorted(p.name for p in out.iterdir()) == before


# Disk full: a one-line error, and nothing half-written left behind.

@pytest.fixture
def small_disk(tmp_path):
    """A tmpfs of `size` bytes (root only: skipped with the reason elsewhere)."""
    mounted = []

    def make(size: int):
        mnt = tmp_path / f"disk{len(mounted)}"
        mnt.mkdir()
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)], capture_output=True,
                           text=True)
        if r.returncode != 0:
            pytest.skip(f"cannot mount a small tmpfs here (needs root): {r.stderr.strip()}")
        mounted.append(mnt)
        return mnt

    yield make
    for mnt in mounted:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_export_onto_a_full_disk_is_one_line_and_leaves_nothing(tiny_folder, tmp_path, small_disk):
    pytest.importorskip("onnxruntime")
    ref = tmp_path / "ref"
    subprocess.run([*CLI, "export", "onnx", str(tiny_folder), "--no-compare-shapes", "-o", str(ref)], check=True,
                   capture_output=True)
    need = sum(f.stat().st_size for f in ref.rglob("*") if f.is_file())
    disk = small_disk(max(64 * 1024, need // 2))  # room for about half the bundle
    r = subprocess.run([*CLI, "export", "onnx", str(tiny_folder), "--no-compare-shapes", "-o", str(disk / "b")],
                       capture_output=True, text=True)
    assert r.returncode == 1, r.stderr[-2000:]
    errors = [line for line in r.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "no space left on the device" in errors[0] and "Traceback" not in r.stderr, r.stderr
    assert list(disk.iterdir()) == []  # no bundle, no temporary folder, no lock


def _small_recipe(tmp_path):
    from test_distill import _recipe_file

    return _recipe_file(tmp_path, "[en]", """
  - {name: text, steps: 30, batch_size: 16, losses: {feature_cosine: 1.0}}""", checkpoint_every=10)


def test_checkpoint_write_on_a_full_disk_keeps_the_previous_checkpoint(quick_reference, tmp_path, monkeypatch):
    """ENOSPC injected into the third checkpoint's weights write: a one-line error naming the problem and the fix,
    the second checkpoint intact, no temporary folder; the resumed run completes."""
    import errno
    import json

    import compact.utils.checkpoint as ckpt_mod

    recipe = _small_recipe(tmp_path)
    real, calls = ckpt_mod.save_file, []

    def full_disk(tensors, path, *a, **k):
        calls.append(path)
        if len(calls) == 5:  # model + optimizer per checkpoint: the third checkpoint's model
            raise OSError(errno.ENOSPC, "No space left on device", path)
        return real(tensors, path, *a, **k)

    monkeypatch.setattr(ckpt_mod, "save_file", full_disk)
    out = tmp_path / "s"
    res = CliRunner().invoke(cli, ["distill", "run", str(recipe), "-o", str(out)])
    assert res.exit_code == 1 and "no space left on the device writing" in res.output, res.output
    assert "Traceback" not in res.output and len([x for x in res.output.splitlines() if x.startswith("Error")]) == 1
    work = tmp_path / ".s.work"
    assert json.loads((work / "checkpoint" / "state.json").read_text())["step"] == 20
    assert not out.exists() and not list(work.glob(".checkpoint.tmp-*"))
    monkeypatch.setattr(ckpt_mod, "save_file", real)
    res = CliRunner().invoke(cli, ["distill", "run", str(recipe), "-o", str(out), "--resume"])
    assert res.exit_code == 0, res.output
    assert (out / "model.safetensors").is_file() and not work.exists()


# Out of memory: the error names the batch size that did not fit and a smaller one; nothing hangs.

def test_bench_batch_that_does_not_fit_names_it_and_a_smaller_one(tiny_folder, tmp_path):
    """A real allocation failure: batch 1,000,000 of 32 px images (11 GiB) under an 8 GiB address-space limit."""
    pytest.importorskip("onnxruntime")
    import resource

    bundle = tmp_path / "b"
    subprocess.run([*CLI, "export", "onnx", str(tiny_folder), "--no-compare-shapes", "--max-batch", "2000000", "-o",
                    str(bundle)], check=True, capture_output=True)

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30))

    r = subprocess.run([*CLI, "bench", "run", str(bundle), "--batch", "1,1000000", "--iters", "3", "-o",
                        str(tmp_path / "r")], preexec_fn=limit, capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, r.stderr[-2000:]
    (err,) = [x for x in r.stderr.splitlines() if x.startswith("Error")]
    assert "out of memory timing the image tower on onnxruntime at batch size 1000000" in err
    assert "batch 500000 or less" in err and "Traceback" not in r.stderr
    assert not (tmp_path / "r").exists() and not list(tmp_path.glob(".r.*"))


def test_torch_allocation_failure_becomes_a_batch_size_hint():
    """torch's own CPU allocator error (a 4 TiB tensor), at batch 64 and at batch 1; other errors pass through."""
    import torch

    from compact.utils.memory import batch_must_fit

    if open("/proc/sys/vm/overcommit_memory").read().strip() == "1":
        pytest.skip("vm.overcommit_memory=1 grants any allocation, so torch cannot fail here")
    with pytest.raises(CompactError, match=r"out of memory embedding images at batch size 64 \(.*allocate.*\); "
                                           r"pass --batch-size 32$"):
        with batch_must_fit(64, "embedding images", "pass --batch-size {smaller}"):
            torch.empty(1 << 42, dtype=torch.uint8)
    with pytest.raises(CompactError, match="does not fit even one sample"):
        with batch_must_fit(1, "embedding images", "pass --batch-size {smaller}"):
            torch.empty(1 << 42, dtype=torch.uint8)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        with batch_must_fit(64, "x", "y"):
            raise RuntimeError("shape mismatch")


def test_training_and_eval_out_of_memory_name_the_recipe_and_option(quick_reference, tmp_path, monkeypatch):
    import compact.distill.trainer as trainer

    def oom(*a, **k):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 9663676416 bytes")

    with monkeypatch.context() as m:
        m.setattr(trainer.StepModule, "forward", oom)
        res = CliRunner().invoke(cli, ["distill", "run", str(_small_recipe(tmp_path)), "-o", str(tmp_path / "s")])
    (err,) = [x for x in res.output.splitlines() if x.startswith("Error")]
    assert res.exit_code == 1 and "out of memory training stage 'text' at batch size 16" in err
    assert "set batch_size: 8 for stage 'text' in the recipe" in err and not (tmp_path / "s").exists()

    from helpers import tiny_compact

    from compact.models.folder import save_model

    save_model(tiny_compact(), tmp_path / "m")
    with monkeypatch.context() as m:
        m.setattr(type(tiny_compact()), "encode_image", oom)
        res = CliRunner().invoke(cli, ["eval", str(tmp_path / "m"), "--data", "reference-quick:test", "--batch-size",
                                       "100"])
    assert res.exit_code == 1 and "out of memory embedding images at batch size 100" in res.output, res.output
    assert "pass --batch-size 50" in res.output and "Traceback" not in res.output


# Hostile and odd captions and images.

def _wds(path, members):
    import io as _io
    import tarfile

    with tarfile.open(path, "w") as tar:
        for name, blob in members:
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, _io.BytesIO(blob))
    return path


@pytest.mark.parametrize("kind", ["csv", "jsonl", "wds-txt", "wds-json", "csv-latin1", "wds-latin1"])
def test_captions_with_nul_or_not_utf8_are_one_line_errors(tmp_path, kind):
    import json

    from compact.data.sources import open_eval_data
    from compact.errors import DataError

    (tmp_path / "a.png").write_bytes(_png())
    nul = "a red\x00square"
    if kind == "csv":
        f = tmp_path / "t.csv"
        f.write_text(f"image,caption\na.png,{nul}\n", encoding="utf-8")
    elif kind == "jsonl":
        f = tmp_path / "t.jsonl"
        f.write_text(json.dumps({"image": "a.png", "caption": nul}) + "\n", encoding="utf-8")
    elif kind == "wds-txt":
        f = _wds(tmp_path / "s.tar", [("0.png", _png()), ("0.txt", nul.encode())])
    elif kind == "wds-json":
        f = _wds(tmp_path / "s.tar", [("0.png", _png()), ("0.json", json.dumps({"caption": nul}).encode())])
    elif kind == "csv-latin1":
        f = tmp_path / "t.csv"
        f.write_bytes("image,caption\na.png,un carré rouge\n".encode("latin-1"))
    else:
        f = _wds(tmp_path / "s.tar", [("0.png", _png()), ("0.txt", "un carré rouge".encode("latin-1"))])
    with pytest.raises(DataError, match="NUL" if "latin1" not in kind else "not valid UTF-8") as e:
        open_eval_data(f)
    assert "\n" not in str(e.value)


def test_long_rtl_mixed_and_emoji_captions_and_a_1x1_image_evaluate(tmp_path):
    """A 100 kB caption (kept whole, truncated by the tokenizer), Hebrew, Arabic, mixed-direction and emoji-only
    captions, and a 1x1 image: read exactly, embedded to finite unit vectors, evaluated through the CLI."""
    import csv
    import json

    import torch
    from helpers import tiny_compact
    from PIL import Image

    from compact.data.sources import open_eval_data
    from compact.models.folder import save_model

    Image.new("RGB", (1, 1), (200, 10, 10)).save(tmp_path / "one.png")
    (tmp_path / "a.png").write_bytes(_png())
    captions = ["a red square next to a blue circle, " * 2900, "ריבוע אדום ליד עיגול כחול", "مربع أحمر بجانب دائرة",
                "red مربع 红色 ריבוע", "🟥🔵", "👍🏽"]
    with open(tmp_path / "t.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["image", "caption"])
        for i, c in enumerate(captions):
            w.writerow(["one.png" if i % 2 else "a.png", c])
    data = open_eval_data(tmp_path / "t.csv")
    assert [c for _, c in data.pairs["en"]] == [c.strip() for c in captions] and len(captions[0]) > 100_000
    model = tiny_compact()
    batch = model.tokenize([c for _, c in data.pairs["en"]])
    assert batch.ids.shape == (len(captions), model.cfg.text.context_length)
    assert bool((batch.mask.sum(1) >= 2).all())  # every caption, emoji-only included, has tokens
    with torch.no_grad():
        t = model.encode_text(batch.ids, batch.mask)
        v = model.encode_image(model.preprocess([data.images.load(i) for i in range(len(data.images))]))
    for e in (t, v):
        assert torch.isfinite(e).all() and bool((e.norm(dim=-1) > 1e-3).all())
    assert torch.equal(model.tokenize([captions[0][:2000]]).ids, batch.ids[:1])  # truncated, not rejected
    save_model(model, tmp_path / "m")
    res = CliRunner().invoke(cli, ["eval", str(tmp_path / "m"), "--data", str(tmp_path / "t.csv"), "-o",
                                   str(tmp_path / "e")])
    assert res.exit_code == 0, res.output
    rep = json.loads(next((tmp_path / "e").glob("*.json")).read_text())
    assert "en" in json.dumps(rep)
