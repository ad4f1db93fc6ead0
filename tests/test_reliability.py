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
