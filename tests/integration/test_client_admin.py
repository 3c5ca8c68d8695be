"""The client's admin key against a real Triton whose repository API is restricted, as deployed."""

from __future__ import annotations

import pytest

from enrichment_light import EnrichmentClient
from enrichment_light.core.errors import AccessDeniedError

pytestmark = pytest.mark.integration

KEY = "s3cret-key"


@pytest.fixture(scope="module")
def restricted_server(triton_server_factory, test_model_repository):
    return triton_server_factory(
        test_model_repository("add_sub"),
        model_control="explicit",
        extra_args=[
            f"--http-restricted-api=model-repository,shared-memory:admin-key={KEY}",
            f"--grpc-restricted-protocol=model-repository,shared-memory:admin-key={KEY}",
        ],
    )


def _url(server, protocol):
    return server.grpc_url if protocol == "grpc" else server.http_url


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_client_load_model_is_refused_when_admin_key_missing(restricted_server, protocol, monkeypatch):
    monkeypatch.delenv("ENRICHMENT_ADMIN_KEY", raising=False)
    with EnrichmentClient(_url(restricted_server, protocol), protocol=protocol, retries=0) as client:
        with pytest.raises(AccessDeniedError, match="admin-key"):
            client.load_model("add_sub")
        assert not client.is_model_ready("add_sub")


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_client_loads_and_unloads_model_when_admin_key_given(restricted_server, protocol, monkeypatch):
    monkeypatch.delenv("ENRICHMENT_ADMIN_KEY", raising=False)
    with EnrichmentClient(_url(restricted_server, protocol), protocol=protocol, admin_key=KEY) as client:
        client.load_model("add_sub")
        assert client.is_model_ready("add_sub")
        client.unload_model("add_sub")
    with EnrichmentClient(_url(restricted_server, protocol), protocol=protocol) as plain:
        assert not plain.is_model_ready("add_sub")


def test_client_reads_admin_key_from_environment_when_not_passed(restricted_server, monkeypatch):
    monkeypatch.setenv("ENRICHMENT_ADMIN_KEY", KEY)
    with EnrichmentClient(restricted_server.grpc_url) as client:
        client.load_model("add_sub")
        assert client.is_model_ready("add_sub")
        client.unload_model("add_sub")
