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
