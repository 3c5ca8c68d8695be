"""Official checkpoints by name: a small registry, a verified download cache, clear offline errors.

The registry (``data/weights.json``) maps a file name such as ``yolov8n-pose.pt`` to its URLs and
sha256. Downloads go to ``~/.cache/enrichment-light/weights`` (override with
``ENRICHMENT_LIGHT_WEIGHTS_DIR``), are streamed into a temporary file next to the target, checked
(HTTP status, Content-Length, size, sha256) and only then moved into place with ``os.replace``:
a failed download never leaves a partial file.

Entries without a published sha256 (the OSNet Google-Drive checkpoints) are trusted on first use:
the hash of the first download is logged so that it can be pinned.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import re
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from enrichment_export.files import checked_path, sha256_file
from enrichment_export.steps import format_bytes
from enrichment_light.core import contract
from enrichment_light.core.errors import ModelFileError
from enrichment_light.core.files import atomic_output

LOGGER = logging.getLogger(__name__)

WEIGHTS_DIR_ENV = "ENRICHMENT_LIGHT_WEIGHTS_DIR"
DEFAULT_WEIGHTS_DIR = Path("~/.cache/enrichment-light/weights")
DEFAULT_WEIGHTS = {
    contract.POSE_MODEL: "yolov8n-pose.pt",
    contract.THREAT_MODEL: "yolov8n.pt",
    contract.REID_MODEL: "osnet_x0_25_msmt17.pt",
}
_CHUNK = 256 * 1024
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_USER_AGENT = "enrichment-export/0.1"


class WeightsDownloadError(ModelFileError):
    """A checkpoint could not be fetched or failed verification; the message says where to put it."""


@dataclass(frozen=True)
class WeightsEntry:
    """One registry entry.

    Attributes:
        name: File name, also the registry key (``yolov8n-pose.pt``).
        model: Contract model name it is meant for.
        urls: Download URLs, tried in order.
        sha256: Expected hex sha256, or None when no hash is published (trust on first use).
        size: Expected size in bytes, or None.
        description: One line for ``fetch --list``.
    """

    name: str
    model: str
    urls: tuple[str, ...]
    sha256: str | None
    size: int | None
    description: str = ""


def load_registry(path: str | os.PathLike[str] | None = None) -> dict[str, WeightsEntry]:
    """Read and validate the weights registry (the packaged ``data/weights.json`` by default).

    Raises:
        ValueError: A malformed entry (names the entry and the field).
    """
    if path is None:
        text = resources.files("enrichment_export").joinpath("data/weights.json").read_text(encoding="utf-8")
    else:
        text = Path(path).read_text(encoding="utf-8")
    raw = json.loads(text)
    out: dict[str, WeightsEntry] = {}
    for name, item in raw.items():
        if name.startswith("_"):
            continue
        if not isinstance(item, Mapping):
            raise ValueError(f"weights registry entry {name!r} must be an object")
        urls = item.get("urls")
        if not urls or not all(isinstance(u, str) and u.startswith(("https://", "http://")) for u in urls):
            raise ValueError(f"weights registry entry {name!r}: 'urls' must be a non-empty list of http(s) URLs")
        sha = item.get("sha256")
        if sha is not None and not (isinstance(sha, str) and _SHA256_RE.match(sha)):
            raise ValueError(f"weights registry entry {name!r}: 'sha256' must be 64 lowercase hex digits or null")
        size = item.get("size")
        if size is not None and (not isinstance(size, int) or size <= 0):
            raise ValueError(f"weights registry entry {name!r}: 'size' must be a positive int or null")
        if "/" in name or "\\" in name or name in {".", ".."}:
            raise ValueError(f"weights registry entry {name!r}: the name must be a plain file name")
        out[name] = WeightsEntry(
            name, str(item.get("model", "")), tuple(urls), sha, size, str(item.get("description", ""))
        )
    return out


def default_cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The weights cache: ``$ENRICHMENT_LIGHT_WEIGHTS_DIR`` or ``~/.cache/enrichment-light/weights``."""
    env = os.environ if environ is None else environ
    value = env.get(WEIGHTS_DIR_ENV)
    return Path(value).expanduser() if value else DEFAULT_WEIGHTS_DIR.expanduser()


def _where_to_put_it(entry: WeightsEntry, target: Path) -> str:
    sha = entry.sha256 or "not published"
    return (
        f"Download it by hand from {entry.urls[0]} and put it at {target} (sha256 {sha}), "
        f"or set {WEIGHTS_DIR_ENV} to a folder that holds {entry.name}, or pass the file's path instead of its name."
    )


def _download_one(
    url: str, target: Path, entry: WeightsEntry, timeout_s: float, opener: Callable[..., Any]
) -> tuple[str, int]:
    """Stream `url` into `target` atomically. Returns (sha256, size). Raises on any problem."""
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    with opener(request, timeout=timeout_s) as resp:
        status = getattr(resp, "status", 200)
        if status != 200:
            raise WeightsDownloadError(f"HTTP {status}")
        ctype = (resp.headers.get("Content-Type") or "").lower()
        if ctype.startswith("text/html"):
            raise WeightsDownloadError("the server sent an HTML page instead of the file (a login or virus-scan page?)")
        length_header = resp.headers.get("Content-Length")
        expected_len = int(length_header) if length_header and length_header.isdigit() else entry.size
        digest = hashlib.sha256()
        received = 0
        next_log = 0.0
        with atomic_output(target, suffix=".part") as tmp, open(tmp, "wb") as fh:
            while True:
                try:
                    chunk = resp.read(_CHUNK)
                except http.client.IncompleteRead as err:
                    chunk = err.partial
                    fh.write(chunk)
                    received += len(chunk)
                    raise WeightsDownloadError(
                        f"connection closed after {received} of {expected_len} bytes (truncated download)"
                    ) from err
                if not chunk:
                    break
                fh.write(chunk)
                digest.update(chunk)
                received += len(chunk)
                if expected_len and received / expected_len >= next_log:
                    LOGGER.info(
                        "downloading %s: %3.0f%% (%s of %s)",
                        entry.name,
                        100 * received / expected_len,
                        format_bytes(received),
                        format_bytes(expected_len),
                    )
                    next_log += 0.25
            fh.flush()
            os.fsync(fh.fileno())
            if length_header and length_header.isdigit() and received != int(length_header):
                raise WeightsDownloadError(
                    f"got {received} bytes but Content-Length was {length_header} (truncated download)"
                )
            if entry.size is not None and received != entry.size:
                raise WeightsDownloadError(f"got {received} bytes, expected {entry.size}")
            sha = digest.hexdigest()
            if entry.sha256 is not None and sha != entry.sha256:
                raise WeightsDownloadError(f"sha256 mismatch: got {sha}, expected {entry.sha256}")
    return sha, received


def fetch_weights(
    name: str,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    registry: Mapping[str, WeightsEntry] | None = None,
    timeout_s: float = 60.0,
    force: bool = False,
    opener: Callable[..., Any] = urllib.request.urlopen,
) -> Path:
    """Return the local path of official checkpoint `name`, downloading and verifying it if needed.

    Args:
        name: A registry name such as ``yolov8n-pose.pt``.
        cache_dir: Where checkpoints live (default :func:`default_cache_dir`).
        registry: The registry (default :func:`load_registry`).
        timeout_s: Socket timeout per request.
        force: Download again even when a verified copy is cached.
        opener: ``urllib.request.urlopen``-compatible callable (injectable for tests).

    Returns:
        The path of the verified file in the cache.

    Raises:
        ValueError: Unknown name or bad timeout.
        WeightsDownloadError: Every URL failed (offline, HTTP error, truncated, bad checksum); the
            message says exactly where to put the file by hand.
    """
    reg = load_registry() if registry is None else registry
    if name not in reg:
        raise ValueError(f"unknown weights {name!r}; known: {sorted(reg)}")
    if not timeout_s > 0:
        raise ValueError(f"timeout_s must be > 0, got {timeout_s!r}")
    entry = reg[name]
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    target = folder / entry.name

    if target.is_file() and not force:
        if entry.sha256 is None:
            LOGGER.info("using cached %s (no published sha256 to check)", target)
            return target
        if sha256_file(target) == entry.sha256:
            LOGGER.info("using cached %s (sha256 verified)", target)
            return target
        LOGGER.warning("cached %s does not match its sha256; downloading it again", target)

    failures: list[str] = []
    for url in entry.urls:
        LOGGER.info("downloading %s from %s to %s", entry.name, url, target)
        try:
            sha, size = _download_one(url, target, entry, timeout_s, opener)
        except (WeightsDownloadError, urllib.error.URLError, OSError, http.client.HTTPException) as err:
            if isinstance(err, urllib.error.HTTPError):
                reason = f"HTTP {err.code} {err.reason}"
            elif isinstance(err, urllib.error.URLError):
                reason = str(err.reason)
            else:
                reason = str(err) or type(err).__name__
            failures.append(f"{url}: {reason}")
            LOGGER.warning("download of %s from %s failed: %s", entry.name, url, reason)
            continue
        if entry.sha256 is None:
            LOGGER.warning(
                "%s has no published sha256; trusting this first download (sha256 %s, %d bytes). "
                "Pin it in the registry to verify later downloads.",
                entry.name,
                sha,
                size,
            )
        LOGGER.info("saved %s (%s, sha256 %s)", target, format_bytes(size), sha)
        return target
    offline = all(_looks_offline(f) for f in failures)
    summary = "the network is unreachable" if offline else "every URL failed"
    raise WeightsDownloadError(
        f"could not fetch {entry.name}: {summary} ({'; '.join(failures)}). {_where_to_put_it(entry, target)}"
    )


def _looks_offline(failure: str) -> bool:
    words = ("Name or service not known", "Temporary failure", "unreachable", "timed out", "refused", "resolve")
    return any(w.lower() in failure.lower() for w in words)


def resolve_weights(
    source: str | os.PathLike[str],
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    registry: Mapping[str, WeightsEntry] | None = None,
    download: bool = True,
    allowed_roots: Any = None,
) -> Path:
    """Turn a user's weights argument (a file path or an official name) into a local file.

    An existing file wins (checked with ``validate_model_path`` against `allowed_roots`); otherwise
    a registry name is looked up in the cache and downloaded when `download` is true.

    Raises:
        ModelFileError: Neither an existing file nor a known name, or a name not cached when
            `download` is false.
        WeightsDownloadError: The download failed.
    """
    reg = load_registry() if registry is None else registry
    text = os.fspath(source)
    path = Path(text).expanduser()
    if path.is_file() or text not in reg:
        checked = checked_path(path, allowed_roots=allowed_roots)
        if checked.is_file():
            return checked
    if text in reg:
        folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        if not download:
            cached = folder / text
            if cached.is_file():
                return cached
            raise ModelFileError(f"{text} is not cached and downloads are off. {_where_to_put_it(reg[text], cached)}")
        return fetch_weights(text, cache_dir=folder, registry=reg)
    raise ModelFileError(f"weights {text!r}: no such file, and not an official name (known names: {sorted(reg)})")
