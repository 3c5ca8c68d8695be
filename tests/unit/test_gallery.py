"""PersonGallery: matching, thresholds, cross-camera, eviction, persistence and input validation."""

from __future__ import annotations

import dataclasses
import json
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest

from enrichment_light.client.gallery import GALLERY_FORMAT_VERSION, GalleryFileError, GalleryMatch, PersonGallery
from enrichment_light.core.errors import EnrichmentError, InvalidInputError

DIM = 512
CAMERAS = ("cam0", "cam1", "cam2", "cam3")
T0 = 1_700_000_000.0


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v, axis=-1, keepdims=True)).astype(np.float32)


def _clusters(n_ids: int = 50, views: int = 8, noise: float = 0.03, seed: int = 0):
    """n_ids identities x views noisy unit vectors, views spread over 4 cameras."""
    rng = np.random.default_rng(seed)
    centres = _unit(rng.standard_normal((n_ids, DIM)))
    emb = _unit(np.repeat(centres, views, axis=0) + noise * rng.standard_normal((n_ids * views, DIM)))
    labels = np.repeat(np.arange(n_ids), views)
    cams = [CAMERAS[i % len(CAMERAS)] for i in range(n_ids * views)]
    return centres, emb, labels, cams


@pytest.fixture
def clustered():
    centres, emb, labels, cams = _clusters()
    g = PersonGallery()
    ids = g.add_batch(emb, camera_ids=cams, timestamps=[T0 + i for i in range(len(emb))])
    label_of = dict(zip(ids.tolist(), labels.tolist(), strict=True))
    return g, centres, emb, labels, cams, label_of


# --- matching correctness ---------------------------------------------------------------------
def test_match_ranks_same_identity_first_when_querying_noisy_views(clustered):
    g, centres, _, _, _, label_of = clustered
    rng = np.random.default_rng(1)
    queries = _unit(centres + 0.03 * rng.standard_normal(centres.shape))
    hits = 0
    for ident, q in enumerate(queries):
        res = g.match(q, top_k=8, threshold=0.5)
        assert [r.similarity for r in res] == sorted((r.similarity for r in res), reverse=True)
        hits += sum(label_of[r.entry_id] == ident for r in res)
        assert label_of[res[0].entry_id] == ident
    recall = hits / (len(queries) * 8)
    assert recall >= 0.99


def test_match_batch_equals_single_matches_when_same_queries(clustered):
    g, centres, *_ = clustered
    batch = g.match_batch(centres[:10], top_k=5, threshold=0.2)
    single = [g.match(c, top_k=5, threshold=0.2) for c in centres[:10]]
    # gemm and gemv may round differently in the last bit; ids and order must agree.
    assert [[m.entry_id for m in r] for r in batch] == [[m.entry_id for m in r] for r in single]
    for rb, rs in zip(batch, single, strict=True):
        assert [m.similarity for m in rb] == pytest.approx([m.similarity for m in rs], abs=1e-6)


def test_match_similarity_is_cosine_when_inputs_not_normalised():
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal(DIM), rng.standard_normal(DIM)
    g = PersonGallery()
    eid = g.add(a * 37.0, camera_id="c", timestamp=T0)
    (m,) = g.match(b * 0.01, threshold=None)
    expected = float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))
    assert m.entry_id == eid
    assert m.similarity == pytest.approx(expected, abs=1e-6)
    np.testing.assert_allclose(np.linalg.norm(g.get_embedding(eid)), 1.0, atol=1e-6)


def test_match_returns_empty_when_gallery_empty():
    assert PersonGallery().match(np.ones(DIM)) == []
    assert PersonGallery().match_batch(np.ones((3, DIM))) == [[], [], []]


def test_match_returns_frozen_results_with_metadata():
    g = PersonGallery()
    v = np.ones(DIM)
    eid = g.add(v, camera_id="door", timestamp=T0 + 0.5, track_id=42)
    g.add(-v, camera_id="door", timestamp=T0)
    (m,) = g.match(v)
    assert m == GalleryMatch(
        entry_id=eid, camera_id="door", timestamp=T0 + 0.5, track_id=42, similarity=pytest.approx(1.0, abs=1e-6)
    )
    assert m.to_dict()["track_id"] == 42
    with pytest.raises(AttributeError):
        m.similarity = 0.0  # type: ignore[misc]


# --- threshold and top_k --------------------------------------------------------------------
def _gallery_with_similarities(sims: list[float]) -> tuple[PersonGallery, np.ndarray]:
    """Entries whose cosine to e0 equals each value in sims (exactly representable construction)."""
    e0, e1 = np.eye(DIM)[0], np.eye(DIM)[1]
    g = PersonGallery()
    for i, s in enumerate(sims):
        g.add(s * e0 + np.sqrt(max(0.0, 1 - s * s)) * e1, camera_id="c", timestamp=T0 + i)
    return g, e0


def test_match_excludes_similarity_equal_to_threshold_when_strictly_greater_semantics():
    g, q = _gallery_with_similarities([1.0, 0.5, 0.25])
    got = [round(m.similarity, 6) for m in g.match(q, threshold=0.5)]
    assert got == [1.0]
    got = [round(m.similarity, 6) for m in g.match(q, threshold=0.49)]
    assert got == [1.0, 0.5]


def test_match_keeps_all_when_threshold_none():
    g, q = _gallery_with_similarities([1.0, 0.0, -1.0])
    assert len(g.match(q, threshold=None, top_k=10)) == 3


def test_match_never_reports_similarity_above_one_when_rounding():
    rng = np.random.default_rng(3)
    v = rng.standard_normal(DIM)
    g = PersonGallery()
    g.add(v, camera_id="c", timestamp=T0)
    (m,) = g.match(v, threshold=0.999)
    assert m.similarity <= 1.0
    assert g.match(v, threshold=1.0) == []


@pytest.mark.parametrize("top_k", [1, 3, 7, 100])
def test_match_returns_at_most_top_k_when_many_candidates(clustered, top_k):
    g, centres, *_ = clustered
    res = g.match(centres[0], top_k=top_k, threshold=None)
    assert len(res) == min(top_k, len(g))
    all_sorted = g.match(centres[0], top_k=len(g), threshold=None)
    assert [r.entry_id for r in res] == [r.entry_id for r in all_sorted[:top_k]]


def test_match_breaks_ties_by_entry_id_when_equal_similarity():
    g = PersonGallery()
    v = np.eye(DIM)[0]  # exact dot products: every similarity is exactly 1.0
    ids = [g.add(v, camera_id="c", timestamp=T0 + 10 - i) for i in range(5)]
    assert [m.entry_id for m in g.match(v, top_k=3)] == ids[:3]


# --- cameras --------------------------------------------------------------------------------
def test_match_skips_query_camera_when_cross_camera_only(clustered):
    g, centres, *_ = clustered
    res = g.match(centres[0], top_k=20, threshold=0.5, camera_id="cam1", cross_camera_only=True)
    assert res
    assert all(r.camera_id != "cam1" for r in res)
    res_all = g.match(centres[0], top_k=20, threshold=0.5, camera_id="cam1")
    assert any(r.camera_id == "cam1" for r in res_all)


def test_match_skips_excluded_camera_when_exclude_camera(clustered):
    g, centres, *_ = clustered
    res = g.match(centres[0], top_k=20, threshold=0.5, exclude_camera="cam2")
    assert res and all(r.camera_id != "cam2" for r in res)
    # Unknown camera excludes nothing.
    assert len(g.match(centres[0], top_k=20, threshold=0.5, exclude_camera="nope")) == 8


def test_match_batch_uses_each_query_camera_when_cross_camera_only(clustered):
    g, centres, *_ = clustered
    cams = ["cam0", "cam3"]
    res = g.match_batch(centres[:2], top_k=20, threshold=0.5, camera_ids=cams, cross_camera_only=True)
    for cam, matches in zip(cams, res, strict=True):
        assert matches and all(m.camera_id != cam for m in matches)


def test_match_raises_when_cross_camera_only_without_camera():
    g = PersonGallery()
    with pytest.raises(InvalidInputError, match="camera_id"):
        g.match(np.ones(DIM), cross_camera_only=True)


# --- eviction -------------------------------------------------------------------------------
def test_evict_expired_drops_entries_older_than_ttl_when_now_given():
    g = PersonGallery(ttl_s=60)
    old = g.add(np.ones(DIM), camera_id="c", timestamp=T0, now=T0)
    edge = g.add(np.ones(DIM), camera_id="c", timestamp=T0 + 40, now=T0 + 40)
    new = g.add(np.ones(DIM), camera_id="c", timestamp=T0 + 50, now=T0 + 50)
    assert g.evict_expired(now=T0 + 60) == 0  # age == ttl is kept
    assert g.evict_expired(now=T0 + 100.5) == 2  # ages 100.5 and 60.5 > 60
    assert old not in g and edge not in g and new in g
    assert len(g) == 1


def test_match_ignores_expired_entries_when_not_yet_evicted():
    g = PersonGallery(ttl_s=10)
    g.add(np.ones(DIM), camera_id="c", timestamp=T0, now=T0)
    assert len(g.match(np.ones(DIM), now=T0 + 5)) == 1
    assert g.match(np.ones(DIM), now=T0 + 11) == []
    assert len(g) == 1


def test_add_evicts_expired_entries_when_ttl_set():
    g = PersonGallery(ttl_s=10)
    g.add(np.ones(DIM), camera_id="c", timestamp=T0, now=T0)
    g.add(np.ones(DIM), camera_id="c", timestamp=T0 + 20, now=T0 + 20)
    assert len(g) == 1


def test_evict_expired_is_noop_when_no_ttl():
    g = PersonGallery()
    g.add(np.ones(DIM), camera_id="c", timestamp=0.0)
    assert g.evict_expired(now=T0) == 0 and len(g) == 1


def test_add_evicts_oldest_first_when_max_size_exceeded():
    g = PersonGallery(max_size=3)
    # timestamps deliberately not in insertion order
    ids = {t: g.add(np.ones(DIM), camera_id="c", timestamp=T0 + t) for t in (5, 1, 3)}
    newest = g.add(np.ones(DIM), camera_id="c", timestamp=T0 + 9)
    assert ids[1] not in g and len(g) == 3
    assert set(g.entry_ids().tolist()) == {ids[5], ids[3], newest}
    # A batch larger than the room left evicts the oldest overall, including its own old rows.
    batch = g.add_batch(np.ones((2, DIM)), camera_ids="c", timestamps=[T0 + 0, T0 + 10])
    assert set(g.entry_ids().tolist()) == {ids[5], newest, int(batch[1])}


def test_add_evicts_smaller_entry_id_first_when_timestamps_tie():
    g = PersonGallery(max_size=2)
    a = g.add(np.ones(DIM), camera_id="c", timestamp=T0)
    b = g.add(np.ones(DIM), camera_id="c", timestamp=T0)
    c = g.add(np.ones(DIM), camera_id="c", timestamp=T0)
    assert a not in g and b in g and c in g


def test_matches_stay_correct_when_many_evictions_and_removals():
    rng = np.random.default_rng(4)
    g = PersonGallery(max_size=500)
    emb = _unit(rng.standard_normal((2000, DIM)))
    ids = np.concatenate(
        [g.add_batch(emb[i : i + 100], camera_ids="c", timestamps=np.arange(i, i + 100.0)) for i in range(0, 2000, 100)]
    )
    assert len(g) == 500 and g.capacity <= 500 + 1024
    assert set(g.entry_ids().tolist()) == set(ids[-500:].tolist())
    g.remove(ids[-500:-400])
    assert len(g) == 400
    for i in (1600, 1999, 1777):
        (m,) = g.match(emb[i], top_k=1)
        assert m.entry_id == ids[i] and m.similarity == pytest.approx(1.0, abs=1e-5)
        np.testing.assert_array_equal(g.get_embedding(int(ids[i])), emb[i])


def test_storage_grows_amortised_when_adding_one_by_one():
    g = PersonGallery(dim=8)
    caps = set()
    for i in range(5000):
        g.add(np.ones(8) + i, camera_id="c", timestamp=float(i))
        caps.add(g.capacity)
    assert len(caps) <= 4  # 1024, 2048, 4096, 8192
    assert g._emb_t.flags.c_contiguous and g._emb_t.dtype == np.float32


# --- persistence ----------------------------------------------------------------------------
def _assert_same_matches(got, want):
    assert len(got) == len(want)
    for g_row, w_row in zip(got, want, strict=True):
        assert [dataclasses.replace(m, similarity=0.0) for m in g_row] == [
            dataclasses.replace(m, similarity=0.0) for m in w_row
        ]
        np.testing.assert_allclose([m.similarity for m in g_row], [m.similarity for m in w_row], rtol=0, atol=1e-6)


def test_save_load_roundtrip_is_bit_exact(clustered, tmp_path):
    g, centres, *_ = clustered
    g.add(np.ones(DIM), camera_id="extra", timestamp=T0 + 1e6, track_id=9)
    g.remove([3, 7])
    path = g.save(tmp_path / "g.npz")
    h = PersonGallery.load(path)
    assert len(h) == len(g) and h.dim == g.dim
    np.testing.assert_array_equal(h.entry_ids(), g.entry_ids())
    for eid in g.entry_ids().tolist():
        assert g.get_embedding(eid).tobytes() == h.get_embedding(eid).tobytes()
    # The stored bytes are identical; similarities may differ in the last float32 bit, because BLAS
    # sums a column differently depending on where it sits in the matrix (remove() moved rows).
    _assert_same_matches(h.match_batch(centres, top_k=5, threshold=0.0), g.match_batch(centres, top_k=5, threshold=0.0))
    _assert_same_matches([h.match(centres[1], threshold=None)], [g.match(centres[1], threshold=None)])
    assert h.add(np.ones(DIM), camera_id="c", timestamp=T0) == g.add(np.ones(DIM), camera_id="c", timestamp=T0)
    assert [p.name for p in tmp_path.iterdir()] == ["g.npz"]  # no temporary left behind


def test_save_load_keeps_settings_when_ttl_and_max_size(tmp_path):
    g = PersonGallery(dim=16, ttl_s=30.0, max_size=10)
    g.save(tmp_path / "g.npz")
    h = PersonGallery.load(tmp_path / "g.npz")
    assert (h.dim, h.ttl_s, h.max_size, len(h)) == (16, 30.0, 10, 0)


def test_save_overwrites_atomically_when_file_exists(tmp_path):
    p = tmp_path / "g.npz"
    g = PersonGallery(dim=4)
    g.add(np.ones(4), camera_id="c", timestamp=0.0)
    g.save(p)
    g.add(np.ones(4), camera_id="c", timestamp=1.0)
    g.save(p)
    assert len(PersonGallery.load(p)) == 2


def test_save_raises_when_directory_missing(tmp_path):
    with pytest.raises(GalleryFileError, match="does not exist"):
        PersonGallery().save(tmp_path / "nope" / "g.npz")


def _saved(tmp_path: Path) -> Path:
    g = PersonGallery(dim=8)
    g.add_batch(np.ones((3, 8)), camera_ids="c", timestamps=[0.0, 1.0, 2.0])
    return g.save(tmp_path / "g.npz")


def _rewrite(path: Path, **replace: np.ndarray) -> None:
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays.update(replace)
    np.savez(path, **arrays)


def _header(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as npz:
        return json.loads(npz["header"].tobytes())


def _header_array(header: dict) -> np.ndarray:
    return np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)


def test_load_raises_when_file_truncated(tmp_path):
    p = _saved(tmp_path)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(GalleryFileError, match="corrupt or truncated"):
        PersonGallery.load(p)


def test_load_raises_when_bytes_corrupted(tmp_path):
    p = _saved(tmp_path)
    data = bytearray(p.read_bytes())
    with zipfile.ZipFile(p) as zf:
        info = zf.getinfo("embeddings.npy")
    pos = info.header_offset + 30 + len(info.filename) + 200  # inside the member's data
    data[pos] ^= 0xFF
    p.write_bytes(bytes(data))
    with pytest.raises(GalleryFileError):
        PersonGallery.load(p)


@pytest.mark.parametrize("content", [b"", b"not a gallery at all", b"\x93NUMPY garbage"])
def test_load_raises_when_not_a_gallery(tmp_path, content):
    p = tmp_path / "g.npz"
    p.write_bytes(content)
    with pytest.raises(GalleryFileError):
        PersonGallery.load(p)


def test_load_raises_when_plain_npy_or_pickle(tmp_path):
    p = tmp_path / "g.npy"
    np.save(p, np.ones(3))
    with pytest.raises(GalleryFileError, match="not a gallery"):
        PersonGallery.load(p)
    q = tmp_path / "obj.npz"
    np.savez(q, header=np.array([{"a": 1}], dtype=object))
    with pytest.raises(GalleryFileError):
        PersonGallery.load(q)


def test_load_raises_when_wrong_version(tmp_path):
    p = _saved(tmp_path)
    header = _header(p)
    header["version"] = GALLERY_FORMAT_VERSION + 1
    _rewrite(p, header=_header_array(header))
    with pytest.raises(GalleryFileError, match=rf"version {GALLERY_FORMAT_VERSION + 1}"):
        PersonGallery.load(p)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format": "something-else"}, "not an"),
        ({"count": 4}, "embeddings must be"),
        ({"cameras": []}, "camera codes"),
        ({"next_entry_id": 1}, "entry ids"),
    ],
)
def test_load_raises_when_header_inconsistent(tmp_path, change, message):
    p = _saved(tmp_path)
    header = _header(p)
    header.update(change)
    _rewrite(p, header=_header_array(header))
    with pytest.raises(GalleryFileError, match=message):
        PersonGallery.load(p)


def test_load_raises_when_array_dtype_wrong(tmp_path):
    p = _saved(tmp_path)
    _rewrite(p, embeddings=np.ones((3, 8), dtype=np.float64))
    with pytest.raises(GalleryFileError, match="float32"):
        PersonGallery.load(p)


def test_load_raises_when_missing(tmp_path):
    with pytest.raises(GalleryFileError, match="does not exist"):
        PersonGallery.load(tmp_path / "missing.npz")
    assert issubclass(GalleryFileError, EnrichmentError)


# --- input validation -----------------------------------------------------------------------
_ok = np.ones(DIM)


@pytest.mark.parametrize(
    ("embedding", "message"),
    [
        (np.ones(DIM - 1), "512 values"),
        (np.ones((1, DIM)), "1-D vector"),
        (np.ones(DIM + 1), "512 values"),
        (np.r_[np.nan, np.ones(DIM - 1)], "NaN or inf"),
        (np.r_[np.inf, np.ones(DIM - 1)], "NaN or inf"),
        (np.zeros(DIM), "zero vector"),
        (np.array(["a"] * DIM), "real numbers"),
        (np.ones(DIM, dtype=bool), "real numbers"),
    ],
)
def test_add_and_match_raise_when_embedding_invalid(embedding, message):
    g = PersonGallery()
    with pytest.raises(InvalidInputError, match=message):
        g.add(embedding, camera_id="c", timestamp=T0)
    with pytest.raises(InvalidInputError, match=message):
        g.match(embedding)
    assert len(g) == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"camera_id": ""}, "camera_id"),
        ({"camera_id": 3}, "camera_id"),
        ({"timestamp": float("nan")}, "timestamp"),
        ({"timestamp": "now"}, "timestamp"),
        ({"track_id": -2}, "track_id"),
        ({"track_id": 1.5}, "track_id"),
        ({"track_id": True}, "track_id"),
    ],
)
def test_add_raises_when_field_invalid(kwargs, message):
    args = {"camera_id": "c", "timestamp": T0, **kwargs}
    with pytest.raises(InvalidInputError, match=message):
        PersonGallery().add(_ok, **args)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"top_k": 0}, "top_k"),
        ({"top_k": 2.0}, "top_k"),
        ({"threshold": 1.5}, "threshold"),
        ({"threshold": float("nan")}, "threshold"),
        ({"exclude_camera": ""}, "exclude_camera"),
        ({"now": float("inf")}, "now"),
    ],
)
def test_match_raises_when_option_invalid(kwargs, message):
    g = PersonGallery(ttl_s=5)
    g.add(_ok, camera_id="c", timestamp=T0, now=T0)
    with pytest.raises(InvalidInputError, match=message):
        g.match(_ok, **kwargs)


def test_add_batch_raises_and_adds_nothing_when_one_row_invalid():
    g = PersonGallery()
    emb = np.ones((4, DIM))
    emb[2] = 0.0
    with pytest.raises(InvalidInputError, match=r"zero vector \(row 2\)"):
        g.add_batch(emb, camera_ids="c", timestamps=T0)
    with pytest.raises(InvalidInputError, match="camera_ids must have 4"):
        g.add_batch(np.ones((4, DIM)), camera_ids=["c"] * 3, timestamps=T0)
    with pytest.raises(InvalidInputError, match="timestamps must have 4"):
        g.add_batch(np.ones((4, DIM)), camera_ids="c", timestamps=[T0])
    assert len(g) == 0


@pytest.mark.parametrize(
    ("kwargs", "message"), [({"dim": 0}, "dim"), ({"ttl_s": 0}, "ttl_s"), ({"max_size": 0}, "max_size")]
)
def test_gallery_raises_when_settings_invalid(kwargs, message):
    with pytest.raises(InvalidInputError, match=message):
        PersonGallery(**kwargs)


def test_invalid_input_error_is_value_error_for_seed_compatibility():
    with pytest.raises(ValueError):
        PersonGallery().add(np.zeros(DIM), camera_id="c", timestamp=T0)


# --- threads --------------------------------------------------------------------------------
def test_concurrent_adds_and_matches_stay_consistent_when_threads():
    g = PersonGallery(dim=16, max_size=300)
    rng = np.random.default_rng(5)
    data = _unit(rng.standard_normal((8, 200, 16)))
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        try:
            for i in range(200):
                g.add(data[k, i], camera_id=f"cam{k}", timestamp=float(i))
                g.match(data[k, i], top_k=3, threshold=None)
        except BaseException as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(g) == 300
    assert len(set(g.entry_ids().tolist())) == 300
