"""Client benchmarks: overhead over bare tritonclient, and shared memory vs in-band bytes.

1. Overhead per call: the same request (one 256x128 crop to ``osnet_x0_25``, the cheapest model)
   through bare ``tritonclient.grpc`` and through ``EnrichmentClient.extract_embeddings_from_crops``
   (input checks, request building, error handling, decoding into ``ReIDResult`` with its hash).
   Calls alternate between the two so drift hits both; the figure is the difference of medians.
2. Transport: one letterboxed ``1x640x640x3`` uint8 tensor to ``yolov8n_pose``, sent in-band
   (binary tensor in the request) vs through a registered, reused system shared-memory region.

Usage::

    python benchmarks/bench_client.py                     # builds an untrained cpu repository, starts Triton
    python benchmarks/bench_client.py --repository DIR    # an existing repository
    python benchmarks/bench_client.py --url HOST:8001     # a running server
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient

from enrichment_light.client import EnrichmentClient
from enrichment_light.client.transport import ShmRegion
from enrichment_light.core import contract as ct


def _median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000.0


def bench_overhead(url: str, calls: int) -> dict[str, float]:
    crop = np.random.default_rng(0).integers(0, 256, (ct.REID_INPUT_HEIGHT, ct.REID_INPUT_WIDTH, 3), dtype=np.uint8)
    raw = grpcclient.InferenceServerClient(url)
    client = EnrichmentClient(url)

    def bare() -> np.ndarray:
        inp = grpcclient.InferInput(ct.CROPS, [1, *crop.shape], "UINT8")
        inp.set_data_from_numpy(crop[None])
        out = grpcclient.InferRequestedOutput(ct.EMBEDDINGS)
        return raw.infer(ct.REID_MODEL, [inp], outputs=[out]).as_numpy(ct.EMBEDDINGS)

    def ours() -> object:
        return client.extract_embeddings_from_crops([crop])

    for _ in range(20):  # warm-up
        bare()
        ours()
    t_bare, t_ours = [], []
    for _ in range(calls):
        for fn, sink in ((bare, t_bare), (ours, t_ours)):
            start = time.perf_counter()
            fn()
            sink.append(time.perf_counter() - start)
    client.close()
    raw.close()
    return {
        "calls": calls,
        "bare_median_ms": _median_ms(t_bare),
        "client_median_ms": _median_ms(t_ours),
        "overhead_median_ms": _median_ms(t_ours) - _median_ms(t_bare),
    }


def bench_transport(url: str, calls: int) -> dict[str, float]:
    tensor = np.full((1, ct.DETECTOR_INPUT_SIZE, ct.DETECTOR_INPUT_SIZE, 3), 114, np.uint8)
    raw = grpcclient.InferenceServerClient(url)
    out = [grpcclient.InferRequestedOutput(ct.RAW_OUTPUT)]
    region = ShmRegion(tensor.nbytes, "bench")
    region.write(tensor)
    raw.register_system_shared_memory(region.name, region.key, region.byte_size)

    def inband() -> None:
        inp = grpcclient.InferInput(ct.IMAGES, list(tensor.shape), "UINT8")
        inp.set_data_from_numpy(tensor)
        raw.infer(ct.POSE_MODEL, [inp], outputs=out)

    def shm() -> None:
        region.write(tensor)  # the copy a real call pays
        inp = grpcclient.InferInput(ct.IMAGES, list(tensor.shape), "UINT8")
        inp.set_shared_memory(region.name, tensor.nbytes)
        raw.infer(ct.POSE_MODEL, [inp], outputs=out)

    try:
        for _ in range(5):
            inband()
            shm()
        t_bytes, t_shm = [], []
        for _ in range(calls):
            for fn, sink in ((inband, t_bytes), (shm, t_shm)):
                start = time.perf_counter()
                fn()
                sink.append(time.perf_counter() - start)
    finally:
        with contextlib.suppress(Exception):
            raw.unregister_system_shared_memory(region.name)
        region.destroy()
        raw.close()
    return {
        "calls": calls,
        "bytes_median_ms": _median_ms(t_bytes),
        "shm_median_ms": _median_ms(t_shm),
        "shm_over_bytes": _median_ms(t_shm) / _median_ms(t_bytes),
    }


def run(url: str, overhead_calls: int, transport_calls: int) -> dict[str, object]:
    with EnrichmentClient(url) as c:
        c.wait_until_ready(120)
    return {
        "overhead_osnet": bench_overhead(url, overhead_calls),
        "transport_pose_640": bench_transport(url, transport_calls),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a running server's gRPC host:port")
    parser.add_argument("--repository", type=Path, help="serve this repository with the embedded server")
    parser.add_argument("--overhead-calls", type=int, default=500)
    parser.add_argument("--transport-calls", type=int, default=60)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    if args.url:
        results = run(args.url, args.overhead_calls, args.transport_calls)
    else:
        from enrichment_light.cli import build_cpu_repository
        from enrichment_light.devserver import EmbeddedServer

        with tempfile.TemporaryDirectory(prefix="bench-client-") as tmp:
            repo = args.repository or build_cpu_repository(Path(tmp) / "repository", untrained=True)
            with EmbeddedServer(repo) as server:
                results = run(server.grpc_url, args.overhead_calls, args.transport_calls)
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
