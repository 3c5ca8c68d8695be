"""A person gallery: follow people across cameras by cosine similarity of re-id embeddings.

:class:`PersonGallery` keeps embeddings (with camera id, timestamp and optional track id) in memory
and answers "who in the gallery looks like this person?" with ranked :class:`GalleryMatch` results.

Design notes:

- **Storage** is one contiguous float32 buffer of shape ``(dim, capacity)`` (feature-major, i.e. the
  transposed embedding matrix) that grows geometrically, so an add never reallocates the whole
  matrix except on the amortised doublings. Feature-major makes the query ``q @ E_t`` a gemv whose
  inner loop streams long contiguous rows; measured on one core with 100k x 512 entries it runs at
  memory bandwidth (about 8-9 ms) where the row-major ``E @ q`` took about 16 ms.
- **Input policy**: embeddings are L2-normalised on the way in (any finite non-zero vector is
  accepted and scaled to unit length; cosine similarity ignores scale anyway). Wrong dimensions,
  NaN/inf, non-numeric dtypes and zero vectors raise :class:`~enrichment_light.core.errors.InvalidInputError`.
- **Matching** returns only candidates with similarity ``> threshold`` (the same strict comparison as
  ``is_same_person``), best first; ties are broken by the smaller entry id.
- **Eviction**: with ``ttl_s`` set, an entry is expired once ``now - timestamp > ttl_s``; expired
  entries are never matched, and :meth:`PersonGallery.add` / :meth:`PersonGallery.add_batch` /
  :meth:`PersonGallery.evict_expired` drop them. ``now`` defaults to ``time.time()``; pass it
  explicitly when replaying recorded timestamps. With ``max_size`` set, adding beyond it evicts the
  oldest entries (smallest timestamp, then smallest entry id), which may be entries of the same batch.
- **Persistence**: :meth:`PersonGallery.save` writes one ``.npz`` file atomically (temporary file in
  the same directory, fsync, ``os.replace``) with a JSON header (format name and version); loading
  uses ``allow_pickle=False``. Any unreadable, truncated, corrupt or wrong-version file raises
  :class:`GalleryFileError`.
- **Thread safety**: every public method takes one internal lock, so a gallery can be shared by
  threads; operations are serialised (a query holds the lock for its matrix-vector product).
"""

from __future__ import annotations

import json
import math
import numbers
import os
import threading
import time
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from enrichment_light.core.contract import EMBEDDING_DIMENSION
from enrichment_light.core.errors import EnrichmentError, InvalidInputError
from enrichment_light.core.files import atomic_output

__all__ = ["GALLERY_FORMAT", "GALLERY_FORMAT_VERSION", "GalleryFileError", "GalleryMatch", "PersonGallery"]

GALLERY_FORMAT = "enrichment-light-gallery"
GALLERY_FORMAT_VERSION = 1
_MIN_CAPACITY = 1024
_NO_TRACK = -1
_QUERY_CHUNK = 256  # queries per matrix product in match_batch (bounds the similarity matrix)
_ARRAY_KEYS = ("header", "embeddings", "entry_ids", "timestamps", "track_ids", "camera_codes")


class GalleryFileError(EnrichmentError):
    """A gallery file that cannot be loaded (missing, truncated, corrupt or of another version)."""


@dataclass(frozen=True)
class GalleryMatch:
    """One gallery entry matched by a query.

    Attributes:
        entry_id: The id :meth:`PersonGallery.add` returned for the entry.
        camera_id: The camera the entry was seen on.
        timestamp: When the entry was seen (seconds since the epoch).
        track_id: The tracker's id for the entry, or ``None``.
        similarity: Cosine similarity to the query, in [-1, 1].
    """

    entry_id: int
    camera_id: str
    timestamp: float
    track_id: int | None
    similarity: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict."""
        return {
            "entry_id": int(self.entry_id),
            "camera_id": self.camera_id,
            "timestamp": float(self.timestamp),
            "track_id": None if self.track_id is None else int(self.track_id),
            "similarity": float(self.similarity),
        }


class PersonGallery:
    """In-memory gallery of person embeddings with cosine matching, eviction and persistence.

    Args:
        dim: Embedding dimension (512 for OSNet-x0.25).
        ttl_s: Time to live in seconds; ``None`` keeps entries until evicted by size or removed.
        max_size: Maximum number of entries; ``None`` for unbounded.

    Example:
        >>> g = PersonGallery(ttl_s=3600, max_size=100_000)
        >>> eid = g.add(embedding, camera_id="front_door", timestamp=1_700_000_000.0, track_id=7)
        >>> g.match(query, camera_id="garage", cross_camera_only=True, now=1_700_000_100.0)
    """

    def __init__(self, *, dim: int = EMBEDDING_DIMENSION, ttl_s: float | None = None, max_size: int | None = None):
        if not _is_int(dim) or dim < 1:
            raise InvalidInputError(f"dim must be a positive integer, got {dim!r}")
        if ttl_s is not None and (not _is_real(ttl_s) or not math.isfinite(ttl_s) or ttl_s <= 0):
            raise InvalidInputError(f"ttl_s must be a positive finite number of seconds or None, got {ttl_s!r}")
        if max_size is not None and (not _is_int(max_size) or max_size < 1):
            raise InvalidInputError(f"max_size must be a positive integer or None, got {max_size!r}")
        self._dim = int(dim)
        self._ttl_s = None if ttl_s is None else float(ttl_s)
        self._max_size = None if max_size is None else int(max_size)
        self._lock = threading.RLock()
        self._n = 0
        self._next_id = 0
        self._cam_names: list[str] = []
        self._cam_codes_by_name: dict[str, int] = {}
        self._alloc(0)

    # --- properties -------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        """Embedding dimension."""
        return self._dim

    @property
    def ttl_s(self) -> float | None:
        """Time to live in seconds, or ``None``."""
        return self._ttl_s

    @property
    def max_size(self) -> int | None:
        """Maximum number of entries, or ``None``."""
        return self._max_size

    @property
    def capacity(self) -> int:
        """Allocated slots (grows geometrically; at least ``len(self)``)."""
        return self._emb_t.shape[1]

    def __len__(self) -> int:
        return self._n

    def __contains__(self, entry_id: object) -> bool:
        if not _is_int(entry_id):
            return False
        with self._lock:
            return bool(np.any(self._ids[: self._n] == int(entry_id)))

    def __repr__(self) -> str:
        return f"PersonGallery(dim={self._dim}, size={self._n}, ttl_s={self._ttl_s}, max_size={self._max_size})"

    # --- adding -----------------------------------------------------------------------------
    def add(
        self,
        embedding: Any,
        *,
        camera_id: str,
        timestamp: float,
        track_id: int | None = None,
        now: float | None = None,
    ) -> int:
        """Add one embedding and return its entry id.

        Args:
            embedding: ``dim`` finite values, not all zero; stored L2-normalised.
            camera_id: Non-empty camera name.
            timestamp: When the person was seen, seconds since the epoch.
            track_id: Optional non-negative tracker id.
            now: Reference time for TTL eviction (default ``time.time()``); only used with ``ttl_s``.

        Returns:
            The new entry id (unique for the gallery's lifetime, increasing).

        Raises:
            InvalidInputError: The embedding or a field is invalid.
        """
        vec = _as_matrix(embedding, self._dim, what="embedding", single=True)
        ids = self._add(
            vec,
            [_check_camera(camera_id)],
            np.array([_check_timestamp(timestamp)]),
            np.array([_check_track(track_id)], dtype=np.int64),
            now,
        )
        return int(ids[0])

    def add_batch(
        self,
        embeddings: Any,
        *,
        camera_ids: str | Sequence[str],
        timestamps: float | Sequence[float],
        track_ids: Sequence[int | None] | None = None,
        now: float | None = None,
    ) -> np.ndarray:
        """Add ``N`` embeddings at once; returns their entry ids (int64 array, in input order).

        Args:
            embeddings: Array-like of shape ``(N, dim)``.
            camera_ids: One camera id for all, or ``N`` of them.
            timestamps: One timestamp for all, or ``N`` of them.
            track_ids: ``N`` optional track ids, or ``None``.
            now: Reference time for TTL eviction (default ``time.time()``).

        Returns:
            The new entry ids. Entries may already be evicted again when the batch exceeds
            ``max_size`` or is older than ``ttl_s``.

        Raises:
            InvalidInputError: Any embedding or field is invalid (nothing is added then).
        """
        mat = _as_matrix(embeddings, self._dim, what="embeddings", single=False)
        m = mat.shape[0]
        if isinstance(camera_ids, str):
            cams = [_check_camera(camera_ids)] * m
        else:
            cams = [_check_camera(c) for c in camera_ids]
            if len(cams) != m:
                raise InvalidInputError(f"camera_ids must have {m} values (one per embedding), got {len(cams)}")
        if _is_real(timestamps):
            ts = np.full(m, _check_timestamp(timestamps), dtype=np.float64)
        else:
            ts = np.array([_check_timestamp(t) for t in timestamps], dtype=np.float64)  # type: ignore[union-attr]
            if ts.shape[0] != m:
                raise InvalidInputError(f"timestamps must have {m} values (one per embedding), got {ts.shape[0]}")
        if track_ids is None:
            tracks = np.full(m, _NO_TRACK, dtype=np.int64)
        else:
            tracks = np.array([_check_track(t) for t in track_ids], dtype=np.int64)
            if tracks.shape[0] != m:
                raise InvalidInputError(f"track_ids must have {m} values (one per embedding), got {tracks.shape[0]}")
        return self._add(mat, cams, ts, tracks, now)

    def _add(
        self, mat: np.ndarray, cams: list[str], ts: np.ndarray, tracks: np.ndarray, now: float | None
    ) -> np.ndarray:
        m = mat.shape[0]
        now_f = self._now(now) if self._ttl_s is not None else None
        with self._lock:
            codes = np.array([self._cam_code(c) for c in cams], dtype=np.int32)
            if m == 0:
                return np.empty(0, dtype=np.int64)
            if now_f is not None:
                self._evict_expired_locked(now_f)
            self._reserve(self._n + m)
            lo, hi = self._n, self._n + m
            new_ids = np.arange(self._next_id, self._next_id + m, dtype=np.int64)
            self._emb_t[:, lo:hi] = mat.T
            self._ids[lo:hi] = new_ids
            self._ts[lo:hi] = ts
            self._tracks[lo:hi] = tracks
            self._cams[lo:hi] = codes
            self._n = hi
            self._next_id += m
            if now_f is not None:
                self._evict_expired_locked(now_f)
            if self._max_size is not None and self._n > self._max_size:
                self._remove_rows(self._oldest_rows(self._n - self._max_size))
            return new_ids

    # --- matching ---------------------------------------------------------------------------
    def match(
        self,
        embedding: Any,
        *,
        top_k: int = 5,
        threshold: float | None = 0.7,
        exclude_camera: str | None = None,
        camera_id: str | None = None,
        cross_camera_only: bool = False,
        now: float | None = None,
    ) -> list[GalleryMatch]:
        """Return the gallery entries most similar to ``embedding``, best first.

        Args:
            embedding: The query (``dim`` finite values, not all zero).
            top_k: At most this many matches (``>= 1``).
            threshold: Keep only similarity ``> threshold`` (in [-1, 1]); ``None`` keeps all.
            exclude_camera: Ignore entries from this camera.
            camera_id: The query's own camera (needed by ``cross_camera_only``).
            cross_camera_only: Ignore entries from ``camera_id``: follow a person to other cameras.
            now: Reference time for TTL (default ``time.time()``); only used with ``ttl_s``.

        Returns:
            Up to ``top_k`` :class:`GalleryMatch`, descending similarity (ties: smaller entry id first).

        Raises:
            InvalidInputError: Invalid query or options.
        """
        vec = _as_matrix(embedding, self._dim, what="embedding", single=True)
        cams = None if camera_id is None else [camera_id]
        return self._match(
            vec,
            top_k=top_k,
            threshold=threshold,
            exclude_camera=exclude_camera,
            query_cams=cams,
            cross_camera_only=cross_camera_only,
            now=now,
        )[0]

    def match_batch(
        self,
        embeddings: Any,
        *,
        top_k: int = 5,
        threshold: float | None = 0.7,
        exclude_camera: str | None = None,
        camera_ids: str | Sequence[str] | None = None,
        cross_camera_only: bool = False,
        now: float | None = None,
    ) -> list[list[GalleryMatch]]:
        """:meth:`match` for ``N`` queries at once (one matrix-matrix product); one list per query.

        ``camera_ids`` is one camera for all queries or one per query (needed by ``cross_camera_only``).
        """
        mat = _as_matrix(embeddings, self._dim, what="embeddings", single=False)
        cams: list[str] | None
        if camera_ids is None:
            cams = None
        elif isinstance(camera_ids, str):
            cams = [camera_ids] * mat.shape[0]
        else:
            cams = list(camera_ids)
            if len(cams) != mat.shape[0]:
                raise InvalidInputError(f"camera_ids must have {mat.shape[0]} values (one per query), got {len(cams)}")
        return self._match(
            mat,
            top_k=top_k,
            threshold=threshold,
            exclude_camera=exclude_camera,
            query_cams=cams,
            cross_camera_only=cross_camera_only,
            now=now,
        )

    def _match(
        self,
        queries: np.ndarray,
        *,
        top_k: int,
        threshold: float | None,
        exclude_camera: str | None,
        query_cams: list[str] | None,
        cross_camera_only: bool,
        now: float | None,
    ) -> list[list[GalleryMatch]]:
        if not _is_int(top_k) or top_k < 1:
            raise InvalidInputError(f"top_k must be a positive integer, got {top_k!r}")
        if threshold is not None and (not _is_real(threshold) or not -1.0 <= threshold <= 1.0):
            raise InvalidInputError(f"threshold must be a number in [-1, 1] or None, got {threshold!r}")
        if exclude_camera is not None:
            _check_camera(exclude_camera, name="exclude_camera")
        if query_cams is not None:
            for c in query_cams:
                _check_camera(c)
        if cross_camera_only and query_cams is None:
            raise InvalidInputError("cross_camera_only=True needs the query's camera_id")
        now_f = self._now(now) if self._ttl_s is not None else None
        thr = -np.inf if threshold is None else float(threshold)
        nq = queries.shape[0]
        with self._lock:
            n = self._n
            if n == 0 or nq == 0:
                return [[] for _ in range(nq)]
            # Rows no query may match (-inf), shared by all queries.
            banned = np.zeros(n, dtype=bool)
            if now_f is not None:
                banned |= self._expired_mask(now_f)
            if exclude_camera is not None and exclude_camera in self._cam_codes_by_name:
                banned |= self._cams[:n] == self._cam_codes_by_name[exclude_camera]
            banned_idx = np.flatnonzero(banned) if banned.any() else None
            qcodes = None
            if cross_camera_only:
                qcodes = np.array([self._cam_codes_by_name.get(c, -1) for c in query_cams], dtype=np.int32)  # type: ignore[union-attr]
            emb_t = self._emb_t[:, :n]
            results: list[list[GalleryMatch]] = []
            for start in range(0, nq, _QUERY_CHUNK):
                q = queries[start : start + _QUERY_CHUNK]
                sims = q @ emb_t  # (chunk, n) float32
                if banned_idx is not None:
                    sims[:, banned_idx] = -np.inf
                for row in range(q.shape[0]):
                    s = sims[row]
                    if qcodes is not None:
                        s[self._cams[:n] == qcodes[start + row]] = -np.inf
                    results.append(self._top_k(s, top_k, thr))
            return results

    def _top_k(self, sims: np.ndarray, k: int, thr: float) -> list[GalleryMatch]:
        # Candidates above the threshold first (usually few), then argpartition among them.
        cand = np.flatnonzero(sims > thr)
        if cand.size == 0:
            return []
        if cand.size > k:
            vals = sims[cand]
            kth = vals[np.argpartition(vals, cand.size - k)[cand.size - k]]  # k-th largest similarity
            above = cand[vals > kth]
            tied = cand[vals == kth]  # keep the smallest entry ids among ties at the cut
            tied = tied[np.argsort(self._ids[tied], kind="stable")[: k - above.size]]
            cand = np.concatenate([above, tied])
        vals = np.minimum(sims[cand].astype(np.float64), 1.0)
        ids = self._ids[cand]
        order = np.lexsort((ids, -vals))
        out: list[GalleryMatch] = []
        for i in order:
            sim = float(vals[i])
            if not sim > thr:  # after clipping rounding noise above 1.0
                continue
            row = int(cand[i])
            track = int(self._tracks[row])
            out.append(
                GalleryMatch(
                    entry_id=int(ids[i]),
                    camera_id=self._cam_names[int(self._cams[row])],
                    timestamp=float(self._ts[row]),
                    track_id=None if track == _NO_TRACK else track,
                    similarity=sim,
                )
            )
        return out

    # --- removal and eviction ---------------------------------------------------------------
    def evict_expired(self, *, now: float | None = None) -> int:
        """Drop entries with ``now - timestamp > ttl_s``; returns how many were dropped (0 without TTL)."""
        if self._ttl_s is None:
            return 0
        now_f = self._now(now)
        with self._lock:
            return self._evict_expired_locked(now_f)

    def remove(self, entry_ids: int | Iterable[int]) -> int:
        """Remove entries by id; unknown ids are ignored. Returns how many were removed."""
        wanted = np.array([entry_ids] if _is_int(entry_ids) else list(entry_ids), dtype=np.int64)  # type: ignore[arg-type]
        with self._lock:
            rows = np.flatnonzero(np.isin(self._ids[: self._n], wanted))
            self._remove_rows(rows)
            return int(rows.size)

    def clear(self) -> None:
        """Remove every entry and release the storage (entry ids keep increasing)."""
        with self._lock:
            self._n = 0
            self._alloc(0)

    def entry_ids(self) -> np.ndarray:
        """The ids of the stored entries, ascending."""
        with self._lock:
            return np.sort(self._ids[: self._n])

    def get_embedding(self, entry_id: int) -> np.ndarray:
        """The stored (L2-normalised, float32) embedding of ``entry_id``; KeyError if unknown."""
        with self._lock:
            rows = np.flatnonzero(self._ids[: self._n] == entry_id)
            if rows.size == 0:
                raise KeyError(f"no gallery entry {entry_id!r}")
            return self._emb_t[:, rows[0]].copy()

    def _evict_expired_locked(self, now: float) -> int:
        rows = np.flatnonzero(self._expired_mask(now))
        self._remove_rows(rows)
        return int(rows.size)

    def _expired_mask(self, now: float) -> np.ndarray:
        assert self._ttl_s is not None
        return (now - self._ts[: self._n]) > self._ttl_s

    def _oldest_rows(self, k: int) -> np.ndarray:
        """Rows of the ``k`` oldest entries by (timestamp, entry id)."""
        n = self._n
        if k >= n:
            return np.arange(n)
        ts = self._ts[:n]
        kth = ts.min() if k == 1 else np.partition(ts, k - 1)[k - 1]
        older = np.flatnonzero(ts < kth)
        tied = np.flatnonzero(ts == kth)
        need = k - older.size
        tied = tied[np.argsort(self._ids[tied], kind="stable")[:need]]
        return np.concatenate([older, tied])

    def _remove_rows(self, rows: np.ndarray) -> None:
        """Swap-remove: move surviving tail rows into the holes; O(len(rows) * dim)."""
        if rows.size == 0:
            return
        rows = np.unique(rows)
        n = self._n
        new_n = n - rows.size
        holes = rows[rows < new_n]
        movers = np.setdiff1d(np.arange(new_n, n), rows[rows >= new_n], assume_unique=True)
        if holes.size:
            self._emb_t[:, holes] = self._emb_t[:, movers]
            for arr in (self._ids, self._ts, self._tracks, self._cams):
                arr[holes] = arr[movers]
        self._n = new_n

    # --- storage ----------------------------------------------------------------------------
    def _alloc(self, capacity: int) -> None:
        self._emb_t = np.zeros((self._dim, capacity), dtype=np.float32)
        self._ids = np.zeros(capacity, dtype=np.int64)
        self._ts = np.zeros(capacity, dtype=np.float64)
        self._tracks = np.zeros(capacity, dtype=np.int64)
        self._cams = np.zeros(capacity, dtype=np.int32)

    def _reserve(self, needed: int) -> None:
        cap = self.capacity
        if needed <= cap:
            return
        new_cap = max(needed, 2 * cap, _MIN_CAPACITY)
        if self._max_size is not None:
            # At max_size, keep slack for adds before their eviction instead of doubling.
            new_cap = min(new_cap, max(needed, self._max_size + _MIN_CAPACITY))
        n = self._n
        old = (self._emb_t, self._ids, self._ts, self._tracks, self._cams)
        self._emb_t = np.empty((self._dim, new_cap), dtype=np.float32)
        self._emb_t[:, :n] = old[0][:, :n]
        for name, arr in zip(("_ids", "_ts", "_tracks", "_cams"), old[1:], strict=True):
            grown = np.empty(new_cap, dtype=arr.dtype)
            grown[:n] = arr[:n]
            setattr(self, name, grown)

    def _cam_code(self, name: str) -> int:
        code = self._cam_codes_by_name.get(name)
        if code is None:
            code = len(self._cam_names)
            self._cam_names.append(name)
            self._cam_codes_by_name[name] = code
        return code

    @staticmethod
    def _now(now: float | None) -> float:
        if now is None:
            return time.time()
        if not _is_real(now) or not math.isfinite(now):
            raise InvalidInputError(f"now must be a finite number of seconds, got {now!r}")
        return float(now)

    # --- persistence ------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the gallery to one ``.npz`` file atomically; returns the path.

        The file holds a JSON header (format, version, dim, settings, camera names) and the arrays,
        entries sorted by entry id. The target directory must exist.
        """
        target = Path(path)
        if not target.parent.is_dir():
            raise GalleryFileError(
                f"cannot save gallery to {str(target)!r}: directory {str(target.parent)!r} does not exist"
            )
        with self._lock:
            n = self._n
            order = np.argsort(self._ids[:n], kind="stable")
            header = {
                "format": GALLERY_FORMAT,
                "version": GALLERY_FORMAT_VERSION,
                "dim": self._dim,
                "count": n,
                "next_entry_id": self._next_id,
                "ttl_s": self._ttl_s,
                "max_size": self._max_size,
                "cameras": list(self._cam_names),
            }
            arrays = {
                "header": np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8),
                "embeddings": np.ascontiguousarray(self._emb_t[:, :n][:, order].T),
                "entry_ids": self._ids[:n][order],
                "timestamps": self._ts[:n][order],
                "track_ids": self._tracks[:n][order],
                "camera_codes": self._cams[:n][order],
            }
        with atomic_output(target) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> PersonGallery:
        """Read a gallery written by :meth:`save` (settings included).

        Raises:
            GalleryFileError: The file is missing, not a gallery, truncated, corrupt or of an
                unsupported version.
        """
        p = Path(path)
        if not p.is_file():
            raise GalleryFileError(f"gallery file {str(p)!r} does not exist or is not a file")
        try:
            npz = np.load(p, allow_pickle=False)
            if not isinstance(npz, np.lib.npyio.NpzFile):
                raise GalleryFileError(f"{str(p)!r} is not a gallery file (not an .npz archive)")
            with npz:
                missing = [k for k in _ARRAY_KEYS if k not in npz.files]
                if missing:
                    raise GalleryFileError(f"{str(p)!r} is not a gallery file: missing arrays {missing}")
                data = {k: npz[k] for k in _ARRAY_KEYS}
        except GalleryFileError:
            raise
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError, RuntimeError) as err:
            raise GalleryFileError(f"gallery file {str(p)!r} is corrupt or truncated: {err}") from err
        return cls._from_arrays(data, str(p))

    @classmethod
    def _from_arrays(cls, data: dict[str, np.ndarray], where: str) -> PersonGallery:
        def bad(reason: str) -> GalleryFileError:
            return GalleryFileError(f"gallery file {where!r} is invalid: {reason}")

        raw = data["header"]
        if raw.dtype != np.uint8 or raw.ndim != 1:
            raise bad("header is not a byte array")
        try:
            header = json.loads(raw.tobytes().decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as err:
            raise bad(f"header is not JSON ({err})") from err
        if not isinstance(header, dict) or header.get("format") != GALLERY_FORMAT:
            raise bad(f"not an {GALLERY_FORMAT} file")
        version = header.get("version")
        if version != GALLERY_FORMAT_VERSION:
            raise GalleryFileError(
                f"gallery file {where!r} has format version {version!r}; this library reads version "
                f"{GALLERY_FORMAT_VERSION} only"
            )
        try:
            dim, count, next_id = int(header["dim"]), int(header["count"]), int(header["next_entry_id"])
            cameras = [str(c) for c in header["cameras"]]
            gallery = cls(dim=dim, ttl_s=header.get("ttl_s"), max_size=header.get("max_size"))
        except (KeyError, TypeError, ValueError) as err:
            raise bad(f"bad header fields ({err})") from err
        emb, ids, ts = data["embeddings"], data["entry_ids"], data["timestamps"]
        tracks, codes = data["track_ids"], data["camera_codes"]
        expected = {
            "embeddings": (emb, np.float32, (count, dim)),
            "entry_ids": (ids, np.int64, (count,)),
            "timestamps": (ts, np.float64, (count,)),
            "track_ids": (tracks, np.int64, (count,)),
            "camera_codes": (codes, np.int32, (count,)),
        }
        for name, (arr, dtype, shape) in expected.items():
            if arr.dtype != dtype or arr.shape != shape:
                raise bad(f"{name} must be {np.dtype(dtype).name}{list(shape)}, got {arr.dtype.name}{list(arr.shape)}")
        if count:
            if not np.isfinite(emb).all() or not np.isfinite(ts).all():
                raise bad("embeddings or timestamps contain NaN/inf")
            if np.unique(ids).size != count or ids.min() < 0 or ids.max() >= next_id:
                raise bad("entry ids are not unique, negative or beyond next_entry_id")
            if codes.min() < 0 or codes.max() >= len(cameras):
                raise bad("camera codes out of range")
            if tracks.min() < _NO_TRACK:
                raise bad("negative track ids")
        for name in cameras:
            gallery._cam_code(name)
        if len(gallery._cam_names) != len(cameras):
            raise bad("duplicate camera names")
        gallery._reserve(count)
        gallery._emb_t[:, :count] = emb.T
        gallery._ids[:count] = ids
        gallery._ts[:count] = ts
        gallery._tracks[:count] = tracks
        gallery._cams[:count] = codes
        gallery._n = count
        gallery._next_id = next_id
        return gallery


# --- validation helpers -------------------------------------------------------------------
def _is_int(x: object) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, (bool, np.bool_))


def _is_real(x: object) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, (bool, np.bool_))


def _as_matrix(x: Any, dim: int, *, what: str, single: bool) -> np.ndarray:
    """Validate and L2-normalise embeddings; returns float32 ``(N, dim)`` (N == 1 when ``single``)."""
    try:
        arr = np.asarray(x)
    except (TypeError, ValueError) as err:
        raise InvalidInputError(f"{what} must be a numeric array: {err}") from err
    if arr.dtype == np.bool_ or not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise InvalidInputError(f"{what} must hold real numbers, got dtype {arr.dtype}")
    if single:
        if arr.ndim != 1 or arr.shape[0] != dim:
            raise InvalidInputError(f"{what} must be a 1-D vector of {dim} values, got shape {arr.shape}")
        arr = arr[None, :]
    elif arr.ndim != 2 or arr.shape[1] != dim:
        raise InvalidInputError(f"{what} must have shape (N, {dim}), got {arr.shape}")
    arr64 = arr.astype(np.float64, copy=False)
    finite = np.isfinite(arr64).all(axis=1)
    if not finite.all():
        row = int(np.flatnonzero(~finite)[0])
        raise InvalidInputError(f"{what} contains NaN or inf (row {row})")
    norms = np.linalg.norm(arr64, axis=1)
    zero = norms < 1e-12
    if zero.any():
        row = int(np.flatnonzero(zero)[0])
        raise InvalidInputError(f"{what} is a zero vector (row {row}); cosine similarity is undefined")
    return np.ascontiguousarray(arr64 / norms[:, None], dtype=np.float32)


def _check_camera(camera_id: object, *, name: str = "camera_id") -> str:
    if not isinstance(camera_id, str) or not camera_id:
        raise InvalidInputError(f"{name} must be a non-empty string, got {camera_id!r}")
    return camera_id


def _check_timestamp(timestamp: object) -> float:
    if not _is_real(timestamp) or not math.isfinite(timestamp):  # type: ignore[arg-type]
        raise InvalidInputError(f"timestamp must be a finite number of seconds since the epoch, got {timestamp!r}")
    return float(timestamp)  # type: ignore[arg-type]


def _check_track(track_id: object) -> int:
    if track_id is None:
        return _NO_TRACK
    if not _is_int(track_id) or int(track_id) < 0:  # type: ignore[call-overload]
        raise InvalidInputError(f"track_id must be a non-negative integer or None, got {track_id!r}")
    return int(track_id)  # type: ignore[call-overload]
