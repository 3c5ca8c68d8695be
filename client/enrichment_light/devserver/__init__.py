"""The embedded Triton server for development and CI: a lean launcher over the nvidia-pytriton wheel.

- :mod:`.home`: the server layout, from pytriton's distribution helpers.
- :mod:`.spawn`: children that die with this process, without ``preexec_fn``.
- :mod:`.launcher`: :class:`EmbeddedServer` (start, readiness, drain, stop) and :func:`serve_forever`.
- :mod:`.watchdog`: :class:`StubWatchdog`, which reloads a model whose Python-backend stub died.
- :mod:`.procfs`: what they read from ``/proc``.
"""

from enrichment_light.devserver.home import ServerHome, prepare_server_home
from enrichment_light.devserver.launcher import (
    DrainReport,
    EmbeddedServer,
    check_port_free,
    drain_server,
    find_free_port,
    serve_forever,
)
from enrichment_light.devserver.procfs import StubProcess, stub_process
from enrichment_light.devserver.watchdog import StubWatchdog

__all__ = [
    "DrainReport",
    "EmbeddedServer",
    "ServerHome",
    "StubProcess",
    "StubWatchdog",
    "check_port_free",
    "drain_server",
    "find_free_port",
    "prepare_server_home",
    "serve_forever",
    "stub_process",
]
