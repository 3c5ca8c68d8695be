"""Start a child that dies with this process, without ``preexec_fn``.

``subprocess.Popen(preexec_fn=...)`` makes CPython ``fork()`` the whole process and run Python in the child
before ``exec``. With gRPC threads busy in the parent that child can inherit a poller mid-``epoll_wait`` and
die (issue 13: status -6/-11 in 2 of 8 restarts, "Other threads are currently calling into gRPC, skipping
fork() handlers"). Without ``preexec_fn`` CPython 3.11 starts children with ``vfork()``+``exec``, which runs
no fork handlers and no Python in the child.

"Dies with its parent" is then kept by an exec'd helper: the child first ``exec``s a few lines of
``python -I -S`` that call ``prctl(PR_SET_PDEATHSIG, SIGTERM)``, check that the parent is still the one that
started it, and ``exec`` the real program (the death signal survives ``exec``). The kernel sends the signal
when the *thread* that created the child ends, so every child is created by one daemon thread that lives as
long as the process.
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
    helper = [sys.executable, "-I", "-S", "-c", _HELPER, str(os.getpid())]
    _jobs.put((helper + list(argv), popen_kwargs, future))
    return future.result()
