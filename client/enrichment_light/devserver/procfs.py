"""What the launcher and the watchdog read from Linux ``/proc``.

Process groups, command lines, memory, listening sockets, and the Python-backend stubs.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

STUB_NAME = "triton_python_backend_stub"
_INSTANCE_SUFFIX = re.compile(r"_\d+_\d+")  # instance "<model>_<group>_<index>"


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except OSError:
        return None


def stat_fields(pid: int) -> list[str] | None:
    """Fields of ``/proc/<pid>/stat`` after ``pid (comm)``: state, ppid, pgrp, ... (None when gone)."""
    text = _read(f"/proc/{pid}/stat")
    return None if text is None else text[text.rfind(")") + 2 :].split()


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of process group ``pgid``."""
    members = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        fields = stat_fields(int(entry))
        if fields and fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry))
    return members


def cmdline(pid: int) -> list[str]:
    """The process's argv ([] when gone)."""
    return [part for part in (_read(f"/proc/{pid}/cmdline") or "").split("\0") if part]


def rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` in bytes (0 when gone)."""
    for line in (_read(f"/proc/{pid}/status") or "").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def listening_ports(pid: int) -> set[int]:
    """TCP ports on which ``pid`` holds a listening socket."""
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    ports = set()
    for table in ("tcp", "tcp6"):
        for line in (_read(f"/proc/{pid}/net/{table}") or "").splitlines()[1:]:
            cols = line.split()
            if len(cols) > 9 and cols[3] == "0A" and cols[9] in inodes:  # 0A: LISTEN
                ports.add(int(cols[1].rsplit(":", 1)[1], 16))
    return ports


def process_state(pid: int) -> str:
    """How a dead process looks now, in words for the log."""
    fields = stat_fields(pid)
    if fields is None:
        return "exited"
    return "is a zombie (killed or crashed, not yet reaped)" if fields[0] == "Z" else "is gone"


@dataclass(frozen=True)
class StubProcess:
    """One Python-backend stub process, read from its command line.

    Triton 2.51 starts it as
    ``triton_python_backend_stub <repo>/<model>/<version>/model.py <shm region> ... <instance name> ...``.

    Attributes:
        pid: Process id.
        model: Model name.
        instance: ``<model>_<group>_<index>``, e.g. ``pose_postprocess_0_0``.
        region: The stub's shared-memory region (under ``/dev/shm``).
    """

    pid: int
    model: str
    instance: str
    region: str


def stub_process(pid: int) -> StubProcess | None:
    """The :class:`StubProcess` of ``pid``, or None when it is not a model instance's stub.

    The short-lived auto-complete stub is named after the model alone and is skipped.
    """
    argv = cmdline(pid)
    if len(argv) < 3 or not argv[0].endswith(STUB_NAME):
        return None
    model = Path(argv[1]).parent.parent.name
    for arg in argv[2:]:
        if arg.startswith(model) and _INSTANCE_SUFFIX.fullmatch(arg[len(model) :]):
            return StubProcess(pid, model, arg, argv[2])
    return None
