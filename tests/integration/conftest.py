"""Fixtures for tests against the real embedded Triton server (CPU, started from the nvidia-pytriton wheel)."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from enrichment_light.devserver import EmbeddedServer

TEST_MODELS_DIR = Path(__file__).parent / "_models"

ServerFactory = Callable[..., EmbeddedServer]
RepositoryFactory = Callable[..., Path]


@pytest.fixture(scope="session")
def test_model_repository(tmp_path_factory: pytest.TempPathFactory) -> RepositoryFactory:
    """Factory: a fresh repository holding copies of the named test-only models from ``_models/``.

    Copies keep the stubs' ``__pycache__`` out of the source tree. ``make("add_sub", "env_probe")``.
    """

    def make(*names: str) -> Path:
        repo = tmp_path_factory.mktemp("repo")
        for name in names:
            shutil.copytree(TEST_MODELS_DIR / name, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
        return repo

    return make


@pytest.fixture(scope="session")
def triton_server_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerFactory]:
    """Factory ``(repository, **kw) -> EmbeddedServer``: started, ready, on free loopback ports.

    Keyword arguments go to :class:`EmbeddedServer`; the log defaults to a per-server file under the
    session's temporary directory. Every server started here is stopped at the end of the session (stop it
    earlier yourself when the test needs the stop). Close tritonclient clients before a server stops: an
    open HTTP connection makes Triton wait its whole ``exit_timeout_s`` before exiting.
    """
    servers: list[EmbeddedServer] = []
    log_dir = tmp_path_factory.mktemp("triton-logs")

    def start(repository: str | Path, **kw: Any) -> EmbeddedServer:
        kw.setdefault("log_path", log_dir / f"{Path(repository).name}-{len(servers)}.log")
        server = EmbeddedServer(repository, **kw)
        servers.append(server)
        return server.start()

    yield start
    for server in reversed(servers):
        server.stop()
