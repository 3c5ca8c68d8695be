"""Deprecated: the embedded Triton launcher moved to :mod:`enrichment_light.devserver`.

This module re-exports the old names for one release and warns on import.
"""

from __future__ import annotations

import warnings

from enrichment_light.devserver import (
    DrainReport,
    EmbeddedServer,
    ServerHome,
    StubProcess,
    StubWatchdog,
    check_port_free,
    find_free_port,
    prepare_server_home,
    serve_forever,
    stub_process,
)
from enrichment_light.devserver.watchdog import _StubBook

warnings.warn(
    "enrichment_light.server is deprecated; import from enrichment_light.devserver instead",
    DeprecationWarning,
    stacklevel=2,
)

__all__ = [
    "DrainReport",
    "EmbeddedServer",
    "ServerHome",
    "StubProcess",
    "StubWatchdog",
    "_StubBook",
    "check_port_free",
    "find_free_port",
    "prepare_server_home",
    "serve_forever",
    "stub_process",
]
