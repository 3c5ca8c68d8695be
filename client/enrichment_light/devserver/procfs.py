"""What the launcher and the watchdog read from Linux ``/proc`` (psutil is not a dependency of ``serve``)."""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

STUB_NAME = "triton_python_backend_stub"
_INSTANCE_SUFFIX = re.compile(r"_\d+_\d+")  # instance "<model>_<group>_<index>"


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except OSError:
        return ""


def stat_fields(pid: int) -> list[str] | None:
    """Fields of ``/proc/<pid>/stat`` after ``pid (comm)``: state, ppid, pgrp, ... (None when gone)."""
    text = _read(f"/proc/{pid}/stat")
    return text[text.rfind(")") + 2 :].split() if text else None


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of process group ``pgid``."""
    fields = {int(e): stat_fields(int(e)) for e in os.listdir("/proc") if e.isdigit()}
    return [pid for pid, f in fields.items() if f and f[0] != "Z" and int(f[2]) == pgid]


def cmdline(pid: int) -> list[str]:
    """The process's argv ([] when gone)."""
    return [part for part in _read(f"/proc/{pid}/cmdline").split("\0") if part]


def rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` in bytes (0 when gone)."""
    lines = [line for line in _read(f"/proc/{pid}/status").splitlines() if line.startswith("VmRSS:")]
    return int(lines[0].split()[1]) * 1024 if lines else 0


def listening_ports(pid: int) -> set[int]:
    """TCP ports on which ``pid`` holds a listening socket."""
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                inodes.add(os.readlink(f"/proc/{pid}/fd/{fd}").removeprefix("socket:[").rstrip("]"))
    rows = [line.split() for t in ("tcp", "tcp6") for line in _read(f"/proc/{pid}/net/{t}").splitlines()[1:]]
    return {int(c[1].rsplit(":", 1)[1], 16) for c in rows if len(c) > 9 and c[3] == "0A" and c[9] in inodes}  # LISTEN


def process_state(pid: int) -> str:
    """How a dead process looks now, in words for the log."""
    fields = stat_fields(pid)
    if fields is None:
        return "exited"
    return "is a zombie (killed or crashed, not yet reaped)" if fields[0] == "Z" else "is gone"


@dataclass(frozen=True)
class StubProcess:
    """One Python-backend stub: ``triton_python_backend_stub <repo>/<model>/<v>/model.py <region> ... <instance>``.

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
    """The :class:`StubProcess` of ``pid``; None when it is no model instance's stub (or the auto-complete one)."""
    argv = cmdline(pid)
    if len(argv) < 3 or not argv[0].endswith(STUB_NAME):
        return None
    model = Path(argv[1]).parent.parent.name
    instance = next((a for a in argv[2:] if a.startswith(model) and _INSTANCE_SUFFIX.fullmatch(a[len(model) :])), "")
    return StubProcess(pid, model, instance, argv[2]) if instance else None
