"""Named fail points, for the fault-injection tests: kill this process at an exact spot in a write.

`COMPACT_FAILPOINT=NAME[:N]` makes the N-th arrival (default 1st) at `failpoint(NAME)` send SIGKILL to this
process, which is what a power cut, an OOM killer or `kill -9` does. Tests use it to kill a stage in the middle
of a checkpoint write or between the two renames of a folder swap, places a timer cannot hit reliably. Without
the variable a fail point costs one dictionary lookup. (The idea is FreeBSD's fail(9) and TiKV's fail-rs; both
are for other languages, hence these few lines.)

Fail points in the code: `checkpoint.write` (model weights written, optimizer and state not yet),
`checkpoint.saved` (a checkpoint complete), `atomic_dir.swap` (the old folder moved aside, the new one not yet in
place), `bench.result` (after each timed bundle/runtime pair), `quantize.candidate` (after each evaluated
candidate).
"""

from __future__ import annotations

import os
import signal

_ARRIVALS: dict[str, int] = {}


def failpoint(name: str) -> None:
    spec = os.environ.get("COMPACT_FAILPOINT")
    if not spec:
        return
    target, _, nth = spec.partition(":")
    if target != name:
        return
    _ARRIVALS[name] = _ARRIVALS.get(name, 0) + 1
    if _ARRIVALS[name] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
