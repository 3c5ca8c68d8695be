"""Session fixtures of the client tests: one cpu-target repository from random-init weights, servers on it.

The repository is built with the same code path as ``enrichment-light serve --untrained`` (the
export helper's ONNX exporters, then the serving helper's ``build_repository``). Import the
fixtures into a test module with ``from _client_fixtures import *``. A fixture imported into
several modules is a separate fixture in each, so the repository and the servers are cached here,
once per test session (the launcher's ``triton_server_factory`` stops the servers at its end).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from enrichment_light.cli import build_cpu_repository, sample_images
from enrichment_light.devserver import EmbeddedServer

_CACHE: dict[str, object] = {}

__all__ = ["client_repository", "closed_port_url", "enrichment_server", "explicit_server", "sample_paths"]


@pytest.fixture(scope="session")
def client_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A built ``cpu`` repository (random-init weights) with its ``repository.json``."""
    pytest.importorskip("torch")
    pytest.importorskip("ultralytics")
    if "repository" not in _CACHE and os.environ.get("ENRICHMENT_TEST_REPOSITORY"):
        # a repository built before with the same code path (saves the export on repeated slow runs)
        _CACHE["repository"] = Path(os.environ["ENRICHMENT_TEST_REPOSITORY"])
    if "repository" not in _CACHE:
        root = tmp_path_factory.mktemp("client-repo")
        _CACHE["repository"] = build_cpu_repository(root / "repository", untrained=True)
    return _CACHE["repository"]


@pytest.fixture(scope="session")
def enrichment_server(client_repository: Path, triton_server_factory) -> EmbeddedServer:
    """The shared server (model control ``none``) for every read-only client test."""
    if "server" not in _CACHE:
        _CACHE["server"] = triton_server_factory(client_repository)
    return _CACHE["server"]


@pytest.fixture(scope="session")
def explicit_server(client_repository: Path, triton_server_factory) -> EmbeddedServer:
    """A second server in explicit model-control mode, for load/unload tests."""
    if "explicit" not in _CACHE:
        _CACHE["explicit"] = triton_server_factory(client_repository, model_control="explicit", load_models=["*"])
    return _CACHE["explicit"]


@pytest.fixture(scope="session")
def sample_paths() -> list[Path]:
    """Ultralytics' bus.jpg and zidane.jpg."""
    paths = sample_images()
    if len(paths) != 2:
        pytest.skip("Ultralytics' sample photos are not installed")
    return paths


@pytest.fixture
def closed_port_url() -> str:
    """``127.0.0.1:<port>`` where nothing listens (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"127.0.0.1:{port}"
