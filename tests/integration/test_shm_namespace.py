"""Triton's own words when it cannot open a client's shared-memory region, and the client's hint.

A server in another IPC namespace (a container without ``ipc: host``) cannot ``shm_open`` the
client's region. The same failure is produced here by registering a key that does not exist in
``/dev/shm``: the real server's message must be recognised and turned into the one-line hint.
"""

from __future__ import annotations

import uuid

import pytest
from tritonclient.utils import InferenceServerException

from enrichment_light.client.transport import translate_error
from enrichment_light.core.errors import EnrichmentError

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server(triton_server_factory, test_model_repository):
    return triton_server_factory(test_model_repository("add_sub"))


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_translate_error_gives_ipc_hint_when_real_server_cannot_open_region(server, protocol):
    if protocol == "grpc":
        import tritonclient.grpc as module

        url = server.grpc_url
    else:
        import tritonclient.http as module

        url = server.http_url
    key = f"/el_missing_{uuid.uuid4().hex[:8]}"
    client = module.InferenceServerClient(url)
    try:
        with pytest.raises(InferenceServerException) as info:
            client.register_system_shared_memory("missing", key, 64)
    finally:
        client.close()
    mapped = translate_error(info.value, url=url)
    assert type(mapped) is EnrichmentError, (type(mapped), str(info.value))
    assert key in str(mapped) and "IPC namespace" in str(mapped) and "ENRICHMENT_IPC=host" in str(mapped)
