"""State and read-only properties shared by the sync and asyncio clients."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from enrichment_light.client.plans import CLIENT_MODELS, TENSOR_ENSEMBLES, ClientCore
from enrichment_light.client.transport import admin_headers

# How long unload_model waits for Triton to finish unloading when the client has no timeout_s.
UNLOAD_WAIT_S = 30.0


class ClientBase:
    """State and read-only properties shared by the sync and asyncio clients."""

    def __init__(
        self,
        url: str | Sequence[str] | None,
        *,
        manifest: str | os.PathLike[str] | None,
        admin_key: str | None,
        **settings: Any,
    ) -> None:
        # settings: protocol, timeout_s, retries, backoff_s, version, transport, array_format
        # (checked by ClientCore; the public signatures are EnrichmentClient's and AsyncEnrichmentClient's).
        if manifest is None:
            manifest = os.environ.get("ENRICHMENT_REPOSITORY")
        self._core = ClientCore(url, manifest=manifest, **settings)
        self._admin_headers = admin_headers(admin_key, protocol=self._core.protocol)

    @property
    def urls(self) -> list[str]:
        """Server addresses, in fail-over order."""
        return self._core.urls

    @property
    def protocol(self) -> str:
        """``"grpc"`` or ``"http"``."""
        return self._core.protocol

    @property
    def transport(self) -> str:
        """``"bytes"`` or ``"shm"``."""
        return self._core.transport

    @staticmethod
    def _still_unloading(index: Any, model: str) -> bool:
        """Whether the repository index shows `model` in Triton's UNLOADING state.

        Triton answers an unload request at once; a Python-backend model then takes about a second to
        stop its stub, and while it does the server reports not ready (strict readiness). The
        clients' ``unload_model`` waits this out, so that what follows sees a plainly unloaded model.
        """
        models = index.get("models", []) if isinstance(index, dict) else index
        return any(dict(m).get("name") == model and dict(m).get("state") == "UNLOADING" for m in models)

    def _default_models(self) -> tuple[str, ...]:
        """What ``wait_until_ready`` waits for: every model the client's methods call with its transport."""
        return CLIENT_MODELS + (tuple(TENSOR_ENSEMBLES.values()) if self.transport == "shm" else ())
