"""State and read-only properties shared by the sync and asyncio clients."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from enrichment_light.client.plans import ClientCore
from enrichment_light.client.transport import admin_headers


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
