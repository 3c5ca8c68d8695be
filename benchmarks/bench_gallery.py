"""Benchmark PersonGallery on ONE core: query latency against N stored embeddings, batch queries, adds, save/load.

Usage:
    python benchmarks/bench_gallery.py [--size 100000] [--queries 200] [--batch 64] [--json out.json]

BLAS/OpenMP threads are forced to 1 and the process is pinned to one CPU before NumPy is imported.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"
if hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from enrichment_light.client.gallery import PersonGallery  # noqa: E402

DIM = 512
T0 = 1_700_000_000.0


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _stats_ms(samples: list[float]) -> dict[str, float]:
    ms = sorted(s * 1e3 for s in samples)
    return {
        "median_ms": round(statistics.median(ms), 3),
        "p95_ms": round(ms[min(len(ms) - 1, int(0.95 * len(ms)))], 3),
        "min_ms": round(ms[0], 3),
    }


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark and print a JSON report."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=100_000, help="stored embeddings")
    ap.add_argument("--queries", type=int, default=200, help="single queries timed")
    ap.add_argument("--batch", type=int, default=64, help="queries per match_batch call")
    ap.add_argument("--json", type=Path, help="also write the report here")
    args = ap.parse_args(argv)

    rng = np.random.default_rng(0)
    n_ids = max(1, args.size // 10)  # 10 views per identity: matches above 0.7 exist
    centres = _unit(rng.standard_normal((n_ids, DIM)))
    emb = _unit(centres[rng.integers(0, n_ids, args.size)] + 0.03 * rng.standard_normal((args.size, DIM)))
    cams = [f"cam{i % 4}" for i in range(args.size)]
    queries = _unit(centres[rng.integers(0, n_ids, args.queries)] + 0.03 * rng.standard_normal((args.queries, DIM)))

    report: dict = {
        "size": args.size,
        "dim": DIM,
        "cpu_affinity": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "machine": platform.processor() or platform.machine(),
        "python": sys.version.split()[0],
        "numpy": np.__version__,
    }

    g = PersonGallery()
    t = time.perf_counter()
    for start in range(0, args.size, 10_000):
        g.add_batch(emb[start : start + 10_000], camera_ids=cams[start : start + 10_000], timestamps=T0 + start)
    report["add_batch_total_s"] = round(time.perf_counter() - t, 3)

    for q in queries[:5]:  # warm-up
        g.match(q)

    def time_single(**kw) -> dict[str, float]:
        samples = []
        for q in queries:
            t0 = time.perf_counter()
            g.match(q, **kw)
            samples.append(time.perf_counter() - t0)
        return _stats_ms(samples)

    report["match_top5_thr0.7"] = time_single(top_k=5, threshold=0.7)
    report["match_top5_no_threshold"] = time_single(top_k=5, threshold=None)
    report["match_top5_cross_camera"] = time_single(top_k=5, threshold=0.7, camera_id="cam0", cross_camera_only=True)

    batch = queries[: args.batch]
    samples = []
    for _ in range(max(3, 20 * 64 // max(1, args.batch) // 4)):
        t0 = time.perf_counter()
        g.match_batch(batch, top_k=5, threshold=0.7)
        samples.append(time.perf_counter() - t0)
    b = _stats_ms(samples)
    b["per_query_median_ms"] = round(b["median_ms"] / len(batch), 3)
    b["batch"] = len(batch)
    report["match_batch_top5_thr0.7"] = b

    # Steady-state single adds at max_size (each add evicts the oldest entry).
    capped = PersonGallery(max_size=args.size)
    capped.add_batch(emb, camera_ids="cam0", timestamps=T0)
    samples = []
    for i, v in enumerate(queries):
        t0 = time.perf_counter()
        capped.add(v, camera_id="cam1", timestamp=T0 + 1 + i)
        samples.append(time.perf_counter() - t0)
    report["add_one_at_max_size"] = _stats_ms(samples)

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "gallery.npz"
        t0 = time.perf_counter()
        g.save(path)
        report["save_s"] = round(time.perf_counter() - t0, 3)
        report["file_mib"] = round(path.stat().st_size / 2**20, 1)
        t0 = time.perf_counter()
        PersonGallery.load(path)
        report["load_s"] = round(time.perf_counter() - t0, 3)

    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return report


if __name__ == "__main__":
    main()
