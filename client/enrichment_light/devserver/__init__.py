"""The embedded Triton server for development and CI (nvidia-pytriton wheel)."""

from enrichment_light.devserver.drain import DrainReport, drain_server
from enrichment_light.devserver.home import ServerHome, prepare_server_home
from enrichment_light.devserver.launcher import EmbeddedServer, check_port_free, find_free_port, serve_forever
from enrichment_light.devserver.processes import StubProcess, process_group, stub_process
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
    "process_group",
    "serve_forever",
    "stub_process",
]
