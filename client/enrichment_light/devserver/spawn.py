"""Start a child that dies with this process, without ``preexec_fn``.

``Popen(preexec_fn=...)`` forks and runs Python in the child; with gRPC threads busy that child can die
(issue 13: status -6/-11). Without it CPython uses ``vfork()``+``exec``. An exec'd ``python -I -S`` helper sets
``PR_SET_PDEATHSIG`` (kept across ``exec``), checks its parent and ``exec``s the program. The kernel signals
when the *creating thread* ends, so one daemon thread that lives as long as the process creates every child.
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
from concurrent.futures import Future
from typing import Any

# PR_SET_PDEATHSIG = 1; exit 70 when the parent is already gone (the signal would never come)
_HELPER = (
    "import ctypes,os,signal,sys\n"
    "ctypes.CDLL(None,use_errno=True).prctl(1,signal.SIGTERM)\n"
    "os.getppid()==int(sys.argv[1]) or sys.exit(70)\n"
    "os.execv(sys.argv[2],sys.argv[2:])\n"
)
_jobs: queue.SimpleQueue[tuple[list[str], dict[str, Any], Future[subprocess.Popen[bytes]]]] = queue.SimpleQueue()
_lock = threading.Lock()
_thread: threading.Thread | None = None


def _spawner() -> None:
    while True:
        argv, kwargs, future = _jobs.get()
        try:
            future.set_result(subprocess.Popen(argv, **kwargs))
        except BaseException as err:  # handed to the caller
            future.set_exception(err)


def spawn(argv: list[str], **popen_kwargs: Any) -> subprocess.Popen[bytes]:
    """``subprocess.Popen(argv, **popen_kwargs)`` whose process gets SIGTERM when this process dies.

    Args:
        argv: Program (an absolute path) and arguments.
        **popen_kwargs: For :class:`subprocess.Popen` (not ``preexec_fn``).

    Returns:
        The process; its pid is the program's (the helper ``exec``s into it).
    """
    global _thread  # noqa: PLW0603 - one spawner thread per process
    with _lock:
        if _thread is None or not _thread.is_alive():
            _thread = threading.Thread(target=_spawner, name="enrichment-light-spawner", daemon=True)
            _thread.start()
    future: Future[subprocess.Popen[bytes]] = Future()
    _jobs.put(([sys.executable, "-I", "-S", "-c", _HELPER, str(os.getpid()), *argv], popen_kwargs, future))
    return future.result()
