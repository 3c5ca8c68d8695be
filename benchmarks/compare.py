"""Side-by-side benchmark, in one run: (a) seed-equivalent PyTorch, (b) bare onnxruntime, (c) our Triton pipeline.

All paths use the same photos (Ultralytics' bus.jpg and zidane.jpg) and the same checkpoints: random-init
models built from the Ultralytics YAMLs / our OSNet (default), or your weights via flags. The ONNX files
(b) runs and the server (c) serves are exported from exactly those checkpoints.

Workloads (one *item* each):

- ``pose+threat``: one photo through pose estimation, then threat detection (two calls, as a
  consumer of the seed's two classes does); throughput in images/s;
- ``reid@32``: 32 person crops (cut from bus.jpg, 60-160 x 140-420 px) to 512-d embeddings, one
  batch; throughput in crops/s.

Each cell (workload x path x concurrency 1/4/8) runs ``concurrency`` threads for ``--cell-s``
seconds; rounds interleave the paths so that drift on a shared machine hits all of them. Latency is
per item (median, p95); throughput is items over wall time. Ratios to (a) and (b) come from the same run.

Usage::

    python benchmarks/compare.py                  # ~5 min: 2 rounds x 3 s per cell
    python benchmarks/compare.py --quick          # ~1 min: 1 round x 1 s per cell
    python benchmarks/compare.py --pose-weights yolov8n-pose.pt --threat-weights weapons.pt \\
        --reid-weights osnet_x0_25_msmt17.pth

Writes ``benchmarks/results/compare.{json,md,png}`` (``--out`` to change).
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "0")
os.environ.setdefault("YOLO_VERBOSE", "False")
os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="yolo-config-"))

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _paths_common import (
    CROP_BATCH,
    Cell,
    analyse,
    chart,
    markdown,
    person_crops,
    photos,
    run_cell,
    timed,
    write_json,
)

from enrichment_light.core import contract as ct

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _log(msg: str) -> None:
    print(f"[compare {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def build(models: dict, work: Path, intra_op_threads: int = 2) -> tuple[Path, list[str]]:
    """Export the three checkpoints to ONNX and build the cpu repository from them."""
    from enrichment_export.onnx_export import export_onnx
    from enrichment_export.repository import BuildOptions, build_repository

    art = work / "artifacts"
    art.mkdir(parents=True, exist_ok=True)
    for name in ct.INFERENCE_MODELS:
        export_onnx(name, models[name], art / f"{name}.onnx")
    options = BuildOptions(ort_intra_op_threads=intra_op_threads)
    result = build_repository(work / "repository", target="cpu", artifacts=art, options=options, allowed_roots=[work])
    return result.out_dir, list(result.manifest["threat_class_names"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="~1 minute: 1 round of 1 s cells")
    p.add_argument("--rounds", type=int, help="interleaved rounds (default 2; 1 with --quick)")
    p.add_argument("--cell-s", type=float, help="seconds per cell and round (default 3; 1 with --quick)")
    p.add_argument("--concurrency", default="1,4,8", help="comma-separated client concurrencies")
    p.add_argument("--pose-weights", help="Ultralytics pose checkpoint (.pt); default: random init")
    p.add_argument("--threat-weights", help="Ultralytics detect checkpoint (.pt); default: random init")
    p.add_argument("--reid-weights", help="OSNet-x0.25 checkpoint (torchreid/BoxMOT); default: random init")
    p.add_argument("--conf", type=float, default=0.5, help="confidence threshold of every path (server default)")
    p.add_argument("--intra-op-threads", type=int, default=2, help="onnxruntime intra-op threads of (b) and (c)")
    p.add_argument("--workdir", help="where ONNX files and the repository are built (default: a temp dir)")
    p.add_argument("--out", default=str(RESULTS_DIR), help="results folder")
    p.add_argument("--name", default="compare", help="results file stem")
    p.add_argument("--no-chart", action="store_true")
    args = p.parse_args(argv)
    rounds = args.rounds or (1 if args.quick else 2)
    cell_s = args.cell_s or (1.0 if args.quick else 3.0)
    concs = [int(c) for c in args.concurrency.split(",")]
    if rounds < 1 or cell_s <= 0 or not concs or min(concs) < 1:
        p.error("--rounds, --cell-s and --concurrency must be positive")

    import torch
    from _paths_onnx import OnnxRuntimePath
    from _paths_seed import SeedPath, load_models
    from _paths_triton import TritonPath

    from enrichment_light.devserver import EmbeddedServer

    t_start = time.perf_counter()
    started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    weights = {ct.POSE_MODEL: args.pose_weights, ct.THREAT_MODEL: args.threat_weights, ct.REID_MODEL: args.reid_weights}
    tmp = tempfile.TemporaryDirectory(prefix="enrichment-compare-")
    work = Path(args.workdir) if args.workdir else Path(tmp.name)
    work.mkdir(parents=True, exist_ok=True)

    _log("loading checkpoints and exporting ONNX")
    models = load_models(weights)
    repository, class_names = build(models, work, args.intra_op_threads)
    t_build = time.perf_counter() - t_start
    _log(f"repository built in {t_build:.1f} s; starting the embedded Triton server")
    server = EmbeddedServer(repository, startup_timeout_s=180, log_path=work / "tritonserver.log")
    server.start()
    paths: list = []
    try:
        paths = [
            SeedPath(models[ct.POSE_MODEL], models[ct.THREAT_MODEL], models[ct.REID_MODEL], conf=args.conf),
            OnnxRuntimePath(repository, class_names, conf=args.conf, intra_op_threads=args.intra_op_threads),
            TritonPath(server.grpc_url, protocol="grpc"),
            TritonPath(server.http_url, protocol="http"),
            TritonPath(server.grpc_url, protocol="grpc", transport="shm"),
        ]
        images = photos()
        crops = person_crops(CROP_BATCH)
        # The server path uses its configured default threshold; set the in-process paths to the same.
        if abs(args.conf - 0.5) > 1e-9:
            _log("note: the server's default conf is 0.5; --conf only changes the in-process paths")

        def pose_threat(path):
            def item(i: int, sink: dict) -> int:
                data = images[i % len(images)]
                timed(sink, "pose", lambda: path.pose(data))
                timed(sink, "threat", lambda: path.threat(data))
                return 1

            return item

        def reid(path):
            def item(i: int, sink: dict) -> int:
                return path.reid(crops)

            return item

        workloads = {"pose+threat": pose_threat, "reid@32": reid}
        _log("warming up every path")
        for path in paths:
            for data in images:
                path.pose(data)
                path.threat(data)
            path.reid(crops)
            run_cell(pose_threat(path), max(concs), 0.01)
        cells: dict[str, dict[int, dict[str, Cell]]] = {
            w: {c: {path.name: Cell() for path in paths} for c in concs} for w in workloads
        }
        rss_before = server.rss_bytes()
        for r in range(rounds):
            for w, make in workloads.items():
                for c in concs:
                    order = paths if r % 2 == 0 else list(reversed(paths))
                    for path in order:
                        gc.collect()
                        cells[w][c][path.name].add(run_cell(make(path), c, cell_s))
                    _log(f"round {r + 1}/{rounds} {w} conc {c} done")
        rss_after = server.rss_bytes()
    finally:
        for path in paths:
            path.close()
        server.stop()
        tmp.cleanup()

    labels = {path.name: path.label for path in paths}
    results = {
        "meta": {
            "started": started,
            "mode": "quick" if args.quick else "default",
            "rounds": rounds,
            "cell_s": cell_s,
            "concurrency": concs,
            "cpus": os.cpu_count(),
            "cpu_model": _cpu_model(),
            "weights": "user" if any(weights.values()) else "random-init",
            "conf": args.conf,
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "onnxruntime_intra_op_threads": args.intra_op_threads,
            "photos": ["bus.jpg", "zidane.jpg"],
            "crop_batch": CROP_BATCH,
            "build_s": round(t_build, 1),
            "server_rss_mib": {"before": rss_before >> 20, "after": rss_after >> 20},
            "labels": labels,
        },
        "cells": {
            w: {str(c): {name: cell.summary() for name, cell in by_path.items()} for c, by_path in by_conc.items()}
            for w, by_conc in cells.items()
        },
    }
    analyse(results, seed_path="a_seed_torch", ort_path="b_onnxruntime",
            triton_paths=[p.name for p in paths if p.name.startswith("c_")])  # fmt: skip
    results["meta"]["total_s"] = round(time.perf_counter() - t_start, 1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / f"{args.name}.json", results)
    table = markdown(results, labels)
    (out / f"{args.name}.md").write_text(table, encoding="utf-8")
    if not args.no_chart:
        chart(results, labels, out / f"{args.name}.png")
    print(table)
    _log(f"done in {results['meta']['total_s']:.0f} s; results in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
