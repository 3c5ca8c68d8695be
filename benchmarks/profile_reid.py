"""Where re-id's time goes at concurrency 1: 32 crops -> 512-d embeddings, bare onnxruntime vs served.

One interleaved run on a built cpu repository (e.g. the ``repository`` folder that
``compare.py --workdir DIR`` leaves): per round, each path embeds the same 32 person crops (cut
from bus.jpg, as compare.py's ``reid@32``) for ``--cell-s`` seconds, one call at a time.

Paths:

- ``ort``: bare onnxruntime on the repository's OSNet ONNX (2 intra-op threads), crops resized
  with the client's resize (compare.py's (b));
- ``resize``: the client's resize of the 32 crops alone;
- ``grpc@K``: ``EnrichmentClient.extract_embeddings_from_crops`` over gRPC, the crops sent as
  requests of at most K crops each (concurrently; the client's default is ``plans.EMBED_REQUEST_CROPS``, 16).

Triton's statistics extension gives the server's share per call (queue, compute input / infer /
output of ``osnet_x0_25``), read around each served cell.

Usage::

    python benchmarks/profile_reid.py --repository DIR [--rounds 3] [--cell-s 3] [--chunks 32,16]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _paths_common import CROP_BATCH, person_crops

from enrichment_light.core import contract as ct


def _osnet_stats(admin) -> dict[str, int]:
    got = admin.get_inference_statistics(model_name=ct.REID_MODEL, as_json=True)["model_stats"][0]
    inf = got["inference_stats"]
    row = {"inferences": int(got.get("inference_count", 0)), "executions": int(got.get("execution_count", 0))}
    for key in ("success", "queue", "compute_input", "compute_infer", "compute_output"):
        row[f"{key}_ns"] = int(inf.get(key, {}).get("ns", 0))
    row["success_count"] = int(inf.get("success", {}).get("count", 0))
    return row


def _loop(fn, cell_s: float) -> tuple[int, float]:
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < cell_s:
        fn()
        calls += 1
    return calls, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repository", required=True, help="a built cpu repository")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--cell-s", type=float, default=3.0)
    p.add_argument("--chunks", default="32,16", help="crops per request of the served paths")
    p.add_argument("--intra-op-threads", type=int, default=2)
    p.add_argument("--out", help="JSON results file")
    args = p.parse_args(argv)
    chunks = [int(c) for c in args.chunks.split(",")]
    if args.rounds < 1 or args.cell_s <= 0 or not chunks or not all(1 <= c <= ct.MAX_PERSONS_PER_FRAME for c in chunks):
        p.error(f"--rounds, --cell-s must be positive and --chunks in [1, {ct.MAX_PERSONS_PER_FRAME}]")
    repo = Path(args.repository)
    if not (repo / ct.REID_MODEL / "1" / "model.onnx").is_file():
        p.error(f"{repo}: no {ct.REID_MODEL}/1/model.onnx (build a cpu repository first)")

    import onnxruntime as ort
    import tritonclient.grpc as grpcclient

    from enrichment_light.client import EnrichmentClient, plans
    from enrichment_light.core.processing.reid import resize_crops
    from enrichment_light.devserver import EmbeddedServer

    crops = person_crops(CROP_BATCH)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.intra_op_threads
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(str(repo / ct.REID_MODEL / "1" / "model.onnx"), sess_options=opts,
                                   providers=["CPUExecutionProvider"])  # fmt: skip

    def bare() -> None:
        session.run(None, {ct.CROPS: resize_crops(crops)})

    server = EmbeddedServer(repo, startup_timeout_s=180)
    server.start()
    rows: dict[str, list[dict]] = {}
    try:
        admin = grpcclient.InferenceServerClient(server.grpc_url.rsplit("//", maxsplit=1)[-1])
        client = EnrichmentClient(server.grpc_url, protocol="grpc", timeout_s=60.0, retries=0, max_workers=8)

        def served(chunk: int):
            def call() -> None:
                old = plans.EMBED_REQUEST_CROPS
                plans.EMBED_REQUEST_CROPS = chunk  # the client's crops per request (read at call time)
                try:
                    client.extract_embeddings_from_crops(crops)
                finally:
                    plans.EMBED_REQUEST_CROPS = old

            return call

        paths = {"ort": bare, "resize": lambda: resize_crops(crops)}
        paths.update({f"grpc@{c}": served(c) for c in chunks})
        for fn in paths.values():
            fn()
        for r in range(args.rounds):
            order = list(paths.items()) if r % 2 == 0 else list(reversed(paths.items()))
            for name, fn in order:
                before = _osnet_stats(admin) if name.startswith("grpc") else None
                calls, wall = _loop(fn, args.cell_s)
                row = {"calls": calls, "ms_per_call": 1000 * wall / calls, "crops_per_s": calls * CROP_BATCH / wall}
                if before is not None:
                    after = _osnet_stats(admin)
                    delta = {k: after[k] - before[k] for k in after}
                    row["executions_per_call"] = delta["executions"] / calls
                    for key in ("queue", "compute_input", "compute_infer", "compute_output"):
                        row[f"server_{key}_ms_per_call"] = delta[f"{key}_ns"] / 1e6 / calls
                rows.setdefault(name, []).append(row)
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)
        client.close()
    finally:
        server.stop()

    summary = {}
    for name, cells in rows.items():
        calls = sum(c["calls"] for c in cells)
        summary[name] = {k: round(sum(c[k] * c["calls"] for c in cells) / calls, 2) for k in cells[0] if k != "calls"}
        summary[name]["calls"] = calls
    print("| path | crops/s | ms/call | vs ort | server queue | in | infer | out (ms/call) | executions/call |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, s in summary.items():
        server = [
            s.get(f"server_{k}_ms_per_call") for k in ("queue", "compute_input", "compute_infer", "compute_output")
        ]
        cols = " | ".join("" if v is None else f"{v:.1f}" for v in server)
        ratio = s["crops_per_s"] / summary["ort"]["crops_per_s"]
        print(f"| {name} | {s['crops_per_s']:.0f} | {s['ms_per_call']:.1f} | {ratio:.2f} | {cols} | "
              f"{s.get('executions_per_call', '')} |")  # fmt: skip
    if args.out:
        Path(args.out).write_text(json.dumps({"summary": summary, "cells": rows}, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
