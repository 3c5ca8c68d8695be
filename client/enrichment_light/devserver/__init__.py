"""The embedded Triton server for development and CI (nvidia-pytriton wheel): home, spawn, launcher, watchdog."""

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
