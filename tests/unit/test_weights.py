"""Weights by name: registry, verified download against a loopback HTTP server, offline errors."""

from __future__ import annotations

import hashlib
import http.server
import os
import threading
from collections.abc import Iterator
from typing import ClassVar

import pytest

from enrichment_export import weights as w
from enrichment_light.core.errors import ModelFileError


@pytest.fixture(autouse=True, scope="module")
def _model_roots(tmp_path_factory):
    # validate_model_path only allows the configured roots; tests write under pytest's tmp dir.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ENRICHMENT_MODEL_ROOTS", os.pathsep.join([str(tmp_path_factory.getbasetemp()), os.getcwd()]))
        yield


GOOD = bytes(range(256)) * 1024  # 256 KiB, more than one chunk
GOOD_SHA = hashlib.sha256(GOOD).hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
    routes: ClassVar[dict[str, tuple[bytes, int | None, str]]] = {}

    def do_GET(self) -> None:
        if self.path not in self.routes:
            self.send_error(404)
            return
        body, length, ctype = self.routes[self.path]
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    _Handler.routes = {
        "/good.pt": (GOOD, None, "application/octet-stream"),
        "/truncated.pt": (GOOD[:1000], len(GOOD), "application/octet-stream"),
        "/page.pt": (b"<html>sign in</html>", None, "text/html; charset=utf-8"),
    }
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


def _registry(base: str, path: str, sha: str | None = GOOD_SHA, size: int | None = None, *more: str):
    return {"m.pt": w.WeightsEntry("m.pt", "osnet_x0_25", (f"{base}{path}", *more), sha, size)}


def test_fetch_weights_saves_verified_file_when_download_is_good(server, tmp_path):
    path = w.fetch_weights("m.pt", cache_dir=tmp_path, registry=_registry(server, "/good.pt", GOOD_SHA, len(GOOD)))
    assert path == tmp_path / "m.pt" and path.read_bytes() == GOOD
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]


@pytest.mark.parametrize(
    ("route", "sha", "match"),
    [
        ("/good.pt", "0" * 64, "sha256 mismatch"),
        ("/truncated.pt", GOOD_SHA, "truncated download"),
        ("/page.pt", None, "HTML page"),
        ("/missing.pt", GOOD_SHA, "404"),
    ],
)
def test_fetch_weights_leaves_no_file_when_download_is_bad(server, tmp_path, route, sha, match):
    with pytest.raises(w.WeightsDownloadError, match=match) as info:
        w.fetch_weights("m.pt", cache_dir=tmp_path, registry=_registry(server, route, sha))
    assert str(tmp_path / "m.pt") in str(info.value)  # says where to put the file
    assert list(tmp_path.iterdir()) == []


def test_fetch_weights_tries_next_url_when_first_fails(server, tmp_path):
    reg = _registry(server, "/truncated.pt", GOOD_SHA, None, f"{server}/good.pt")
    assert w.fetch_weights("m.pt", cache_dir=tmp_path, registry=reg).read_bytes() == GOOD


def test_fetch_weights_trusts_first_download_when_sha_is_unpublished(server, tmp_path, caplog):
    with caplog.at_level("WARNING", logger=w.LOGGER.name):
        w.fetch_weights("m.pt", cache_dir=tmp_path, registry=_registry(server, "/good.pt", None))
    assert GOOD_SHA in caplog.text and "trusting this first download" in caplog.text


def test_fetch_weights_uses_cache_without_network_when_file_is_verified(tmp_path):
    (tmp_path / "m.pt").write_bytes(GOOD)
    reg = _registry("http://127.0.0.1:9", "/never.pt")  # port 9: nothing listens

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("network used")

    assert w.fetch_weights("m.pt", cache_dir=tmp_path, registry=reg, opener=no_network) == tmp_path / "m.pt"


def test_fetch_weights_redownloads_when_cached_file_is_corrupt(server, tmp_path):
    (tmp_path / "m.pt").write_bytes(b"corrupt")
    path = w.fetch_weights("m.pt", cache_dir=tmp_path, registry=_registry(server, "/good.pt"))
    assert path.read_bytes() == GOOD


def test_fetch_weights_says_where_to_put_file_when_offline(tmp_path):
    import urllib.error

    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    reg = _registry("https://example.invalid", "/m.pt")
    with pytest.raises(w.WeightsDownloadError, match="network is unreachable") as info:
        w.fetch_weights("m.pt", cache_dir=tmp_path, registry=reg, opener=offline)
    assert f"put it at {tmp_path / 'm.pt'}" in str(info.value)
    assert w.WEIGHTS_DIR_ENV in str(info.value)
    assert isinstance(info.value, ModelFileError)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"name": "nope.pt"}, "unknown weights"), ({"timeout_s": 0}, "timeout_s must be")],
)
def test_fetch_weights_raises_value_error_when_arguments_are_bad(tmp_path, kwargs, match):
    args = {"name": "m.pt", **kwargs}
    with pytest.raises(ValueError, match=match):
        w.fetch_weights(args.pop("name"), cache_dir=tmp_path, registry=_registry("http://x", "/m"), **args)


def test_load_registry_has_official_names_with_pinned_ultralytics_hashes():
    reg = w.load_registry()
    assert set(w.DEFAULT_WEIGHTS.values()) <= set(reg)
    assert {"yolov8n-pose.pt", "yolov8n.pt", "osnet_x0_25_msmt17.pt", "osnet_x0_25_imagenet.pth"} <= set(reg)
    assert reg["yolov8n-pose.pt"].sha256 == "c6fa93dd1ee4a2c18c900a45c1d864a1c6f7aba75d84f91648a30b7fb641d212"
    assert reg["yolov8n.pt"].sha256 == "f59b3d833e2ff32e194b5bb8e08d211dc7c5bdf144b90d2c8412c47ccfc83b36"
    assert all(e.urls[0].startswith("https://") for e in reg.values())


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ('{"a.pt": {"urls": []}}', "non-empty list"),
        ('{"a.pt": {"urls": ["ftp://x"]}}', "non-empty list"),
        ('{"a.pt": {"urls": ["https://x"], "sha256": "ABC"}}', "64 lowercase hex"),
        ('{"a.pt": {"urls": ["https://x"], "size": -1}}', "positive int"),
        ('{"../a.pt": {"urls": ["https://x"]}}', "plain file name"),
        ('{"a.pt": 3}', "must be an object"),
    ],
)
def test_load_registry_raises_when_entry_is_malformed(tmp_path, body, match):
    path = tmp_path / "reg.json"
    path.write_text(body)
    with pytest.raises(ValueError, match=match):
        w.load_registry(path)


def test_default_cache_dir_follows_env_override(tmp_path):
    assert w.default_cache_dir({w.WEIGHTS_DIR_ENV: str(tmp_path)}) == tmp_path
    assert w.default_cache_dir({}).parts[-2:] == ("enrichment-light", "weights")


def test_resolve_weights_prefers_existing_file_then_cache_then_error(tmp_path):
    local = tmp_path / "mine.pt"
    local.write_bytes(b"x")
    reg = _registry("http://127.0.0.1:9", "/m.pt")
    assert w.resolve_weights(local, registry=reg, cache_dir=tmp_path / "c").resolve() == local.resolve()
    with pytest.raises(ModelFileError, match="not cached and downloads are off"):
        w.resolve_weights("m.pt", registry=reg, cache_dir=tmp_path / "c", download=False)
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "m.pt").write_bytes(GOOD)
    assert w.resolve_weights("m.pt", registry=reg, cache_dir=tmp_path / "c", download=False).read_bytes() == GOOD
    with pytest.raises(ModelFileError, match="not an official name"):
        w.resolve_weights("other.pt", registry=reg, cache_dir=tmp_path)
