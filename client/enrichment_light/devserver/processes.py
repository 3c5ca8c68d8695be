"""The embedded server's processes, read with psutil: its process group and its Python-backend stubs."""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STUB_NAME = "triton_python_backend_stub"
_INSTANCE_SUFFIX = re.compile(r"_\d+_\d+")  # instance "<model>_<group>_<index>"


def process_group(pgid: int) -> list[Any]:
    """Live (non-zombie) ``psutil.Process`` members of process group ``pgid`` (a server and its stubs)."""
    import psutil

    members = []
    for proc in psutil.process_iter(["status"]):
        with contextlib.suppress(OSError):  # gone meanwhile
            if proc.info["status"] != psutil.STATUS_ZOMBIE and os.getpgid(proc.pid) == pgid:
                members.append(proc)
    return members


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
    import psutil

    try:
        argv = psutil.Process(pid).cmdline()
    except psutil.Error:
        return None
    if len(argv) < 3 or not argv[0].endswith(STUB_NAME):
        return None
    model = Path(argv[1]).parent.parent.name
    instance = next((a for a in argv[2:] if a.startswith(model) and _INSTANCE_SUFFIX.fullmatch(a[len(model) :])), "")
    return StubProcess(pid, model, instance, argv[2]) if instance else None


def process_state(pid: int) -> str:
    """How a dead process looks now, in words for the log."""
    import psutil

    try:
        return (
            "is a zombie (killed or crashed, not yet reaped)" if psutil.Process(pid).status() == "zombie" else "is gone"
        )
    except psutil.Error:
        return "exited"
