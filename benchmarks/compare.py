"""Side-by-side benchmark, in one run: (a) seed-equivalent PyTorch, (b) bare onnxruntime, (c) our Triton pipeline.

Paths: (a) Ultralytics/PyTorch with its rect letterbox; (b) bare onnxruntime on the served ONNX files
with the rect letterbox (the like-for-like baseline of the overhead target) and with 640x640;
(c) the served cpu repository (fused pose/threat models, rect letterbox) over gRPC, HTTP and
gRPC+shm (the client letterboxes 640x640 and sends the tensor), plus ``ensemble``: the same ONNX
served as three-step ensembles on a second server (``fuse_cpu_pipelines=False``), to show what the
fusion buys. ``--int8`` adds the INT8 models (helper ``int8``'s ``enrichment_export.quantize``):
bare onnxruntime and a third server, with the INT8 gate's accuracy figures beside them.

All paths use the same photos (Ultralytics' bus.jpg and zidane.jpg) and the same checkpoints: random-init
models built from the Ultralytics YAMLs / our OSNet (default), or your weights via flags. The ONNX files
(b) runs and the server (c) serves are exported from exactly those checkpoints.

Workloads (one *item* each):

- ``pose+threat``: one photo through pose estimation, then threat detection (two calls, as a
  consumer of the seed's two classes does); throughput in images/s. The per-frame paths (tags
  ``frame``, ``int8_frame``, ``enrich``) make one call per photo instead: ``analyze_frame`` (the
  pose and threat requests in flight at once), ``enrich`` (one server call, which also embeds every
  person found), and bare onnxruntime running pose and threat side by side on two single-threaded
  sessions, the like-for-like baseline of ``analyze_frame``'s overhead;
- ``reid@32``: 32 person crops (cut from bus.jpg, 60-160 x 140-420 px) to 512-d embeddings: one
  ``resize_crops`` + ``session.run`` of 32 for (b), one ``extract_embeddings_from_crops`` call for (c)
  (the client sends it as 2 concurrent requests of 16); throughput in crops/s.

Each cell (workload x path x concurrency 1/4/8) runs ``concurrency`` threads for ``--cell-s``
seconds; rounds interleave the paths so that drift on a shared machine hits all of them. Latency is
per item (median, p95); throughput is items over wall time. Ratios to (a) and (b) come from the same run.

Usage::

    python benchmarks/compare.py                  # ~5 min: 2 rounds x 3 s per cell
    python benchmarks/compare.py --quick          # ~1 min: 1 round x 1 s per cell
    python benchmarks/compare.py --pose-weights yolov8n-pose.pt --threat-weights weapons.pt \\
        --reid-weights osnet_x0_25_msmt17.pth
    python benchmarks/compare.py --no-pose --no-ensemble \\
        --variant 'reidold:osnet_intra_op_threads=2,osnet_split_batches=0,osnet_x0_25.instances=1'
                                                  # re-id only, A/B of the OSNet layout

``--variant`` servers run both workloads (a variant may change the detectors or OSNet). ``--reid-bf16``
adds the variant ``reidbf16`` (OSNet in bf16 through OpenVINO, ``--reid-precision bf16``; gRPC and
gRPC+shm) and bare OpenVINO bf16 on the re-id workload; the re-id target stays against bare
onnxruntime FP32.

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


def build(models: dict, work: Path, intra_op_threads: int = 2, **options) -> tuple[Path, list[str]]:
    """Export the three checkpoints to ONNX (once) and build a cpu repository from them.

    `options` go to ``BuildOptions``; the repository folder is named after them.
    """
    from enrichment_export.onnx_export import export_onnx
    from enrichment_export.repository import BuildOptions, build_repository

    art = work / "artifacts"
    art.mkdir(parents=True, exist_ok=True)
    for name in ct.INFERENCE_MODELS:
        if not (art / f"{name}.onnx").is_file():
            export_onnx(name, models[name], art / f"{name}.onnx")
    opts = BuildOptions(ort_intra_op_threads=intra_op_threads, **options)
    folder = "repository" + "".join(f"-{k}-{v}" for k, v in sorted(options.items()))
    result = build_repository(work / folder, target="cpu", artifacts=art, options=opts, allowed_roots=[work])
    return result.out_dir, list(result.manifest["threat_class_names"])


def parse_variant(text: str) -> tuple[str, dict]:
    """``TAG:key=value,...`` -> (tag, ``BuildOptions`` keyword arguments) for ``--variant``.

    ``model.field=value`` keys go to ``BuildOptions.cpu_tuning`` (``pose.instances=2``,
    ``pose.preferred_batch_sizes=2|4``); other keys are ``BuildOptions`` fields (``ort_concurrent_runs=4``).
    Values are integers, else strings (``osnet_precision=bf16``); ``|`` separates the items of a tuple.
    """
    tag, _, spec = text.partition(":")
    if not tag.isidentifier() or not spec:
        raise ValueError(f"--variant {text!r}: expected TAG:key=value,... with an identifier TAG")
    options: dict = {}
    for item in spec.split(","):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--variant {text!r}: {item!r} is not key=value")
        parsed = tuple(int(v) for v in value.split("|") if v) if "|" in value else _scalar(value)
        if "." in key:
            model, field = key.split(".", 1)
            options.setdefault("cpu_tuning", {}).setdefault(model, {})[field] = parsed
        else:
            options[key] = parsed
    return tag, options


def _scalar(value: str) -> int | str:
    try:
        return int(value)
    except ValueError:
        return value  # e.g. osnet_precision=bf16


def build_variant(models: dict, work: Path, intra_op_threads: int, tag: str, options: dict) -> Path:
    """A cpu repository with `options` (``BuildOptions`` keyword arguments) under ``work/repository-TAG``."""
    from enrichment_export.repository import BuildOptions, build_repository

    art = work / "artifacts"
    if not (art / f"{ct.REID_MODEL}.onnx").is_file():
        build(models, work, intra_op_threads)
    opts = BuildOptions(**{"ort_intra_op_threads": intra_op_threads, **options})
    return build_repository(work / f"repository-{tag}", target="cpu", artifacts=art, options=opts,
                            allowed_roots=[work]).out_dir  # fmt: skip


def build_int8(work: Path, intra_op_threads: int) -> tuple[Path, dict[str, Path], dict[str, dict]]:
    """INT8 pose/threat ONNX (forced past the gate: its figures are reported, not enforced) and a repository.

    Calibration and held-out frames are ``bench_int8.frames()``: the augmented bus.jpg / zidane.jpg
    variants docs/int8.md's gate figures and ``tests/integration/test_int8.py`` use.

    Raises:
        SystemExit: helper ``int8``'s ``enrichment_export.quantize`` is not in this tree.
    """
    try:
        from enrichment_export.quantize import export_int8
    except ImportError as err:
        raise SystemExit(
            f"--int8 needs enrichment_export.quantize (helper int8's INT8 export), which this tree lacks ({err}); "
            "merge main once it has it, or run without --int8"
        ) from None
    from bench_int8 import frames

    from enrichment_export.repository import BuildOptions, build_repository

    calibration, held_out = frames()
    art = work / "artifacts"
    int8_dir = work / "artifacts-int8"
    int8_dir.mkdir(parents=True, exist_ok=True)
    onnx, gate = {}, {}
    for name in (ct.POSE_MODEL, ct.THREAT_MODEL):
        result = export_int8(name, art / f"{name}.onnx", int8_dir / f"{name}.onnx", force=True,
                             calibration_frames=calibration, holdout_frames=held_out)  # fmt: skip
        onnx[name] = result.path
        r = result.report
        gate[name] = {"passed": r.passed, "recall": r.recall, "precision": r.precision,
                      "mean_score_diff": r.mean_score_diff, "frames": r.frames,
                      "calibration_frames": len(calibration), "fp32_detections": r.fp32_detections,
                      "int8_detections": r.int8_detections, "matched": r.matched}  # fmt: skip
    out = build_repository(
        work / "repository-int8", target="cpu", onnx={**onnx, ct.REID_MODEL: art / f"{ct.REID_MODEL}.onnx"},
        options=BuildOptions(ort_intra_op_threads=intra_op_threads), allowed_roots=[work],
    )  # fmt: skip
    return out.out_dir, onnx, gate


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
    p.add_argument("--int8", action="store_true", help="add the INT8 paths (needs enrichment_export.quantize)")
    p.add_argument("--no-ensemble", action="store_true", help="skip the three-step-ensemble server")
    p.add_argument("--concurrent-runs", type=int, default=0,
                   help="also serve a repository with this ort_concurrent_runs (A/B against the default)")  # fmt: skip
    p.add_argument("--variant", action="append", default=[],
                   help="also serve a repository built with these options, e.g. "
                        "'inst2:pose.instances=2,threat.instances=2,ort_concurrent_runs=1' (repeatable; "
                        "model.field keys are ModelTuning fields, others BuildOptions fields)")  # fmt: skip
    p.add_argument("--reid-bf16", action="store_true",
                   help="add OSNet in bf16 (OpenVINO): a server built with --reid-precision bf16 (tag reidbf16) "
                        "and bare OpenVINO bf16 beside bare onnxruntime")  # fmt: skip
    p.add_argument("--no-reid", action="store_true", help="skip the re-id workload")
    p.add_argument("--no-pose", action="store_true", help="skip the pose+threat workload (re-id only)")
    p.add_argument("--no-per-frame", action="store_true",
                   help="skip the per-frame paths (analyze_frame, enrich, bare onnxruntime side by side)")  # fmt: skip
    args = p.parse_args(argv)
    try:
        variants = dict(parse_variant(v) for v in args.variant)
    except ValueError as err:
        p.error(str(err))
    if args.int8:
        try:
            import enrichment_export.quantize  # noqa: F401  (helper int8's INT8 export)
        except ImportError as err:
            p.error(f"--int8 needs enrichment_export.quantize, which this tree lacks ({err}); merge main first")
    if args.no_reid and args.no_pose:
        p.error("--no-reid and --no-pose leave no workload")
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
    extra_repos = {}
    if not args.no_ensemble:
        extra_repos["ensemble"] = build(models, work, args.intra_op_threads, fuse_cpu_pipelines=False)[0]
    if args.concurrent_runs:
        extra_repos[f"concurrent{args.concurrent_runs}"] = build(
            models, work, args.intra_op_threads, ort_concurrent_runs=args.concurrent_runs
        )[0]
    if args.reid_bf16:
        variants.setdefault("reidbf16", {"osnet_precision": "bf16"})
    for tag, options in variants.items():
        extra_repos[tag] = build_variant(models, work, args.intra_op_threads, tag, options)
    int8_onnx, gate = {}, {}
    if args.int8:
        extra_repos["int8"], int8_onnx, gate = build_int8(work, args.intra_op_threads)
    t_build = time.perf_counter() - t_start
    _log(f"repositories built in {t_build:.1f} s; starting the embedded Triton server(s)")
    server = EmbeddedServer(repository, startup_timeout_s=180, log_path=work / "tritonserver.log")
    server.start()
    servers = {}
    paths: list = []
    try:
        for tag, repo in extra_repos.items():
            servers[tag] = EmbeddedServer(repo, startup_timeout_s=180, log_path=work / f"tritonserver-{tag}.log")
            servers[tag].start()
        ort_kw = {"conf": args.conf, "intra_op_threads": args.intra_op_threads}
        paths = [
            SeedPath(models[ct.POSE_MODEL], models[ct.THREAT_MODEL], models[ct.REID_MODEL], conf=args.conf),
            OnnxRuntimePath(repository, class_names, rect=True, **ort_kw),
            OnnxRuntimePath(repository, class_names, **ort_kw),
            TritonPath(server.grpc_url, protocol="grpc"),
            TritonPath(server.http_url, protocol="http"),
            TritonPath(server.grpc_url, protocol="grpc", transport="shm"),
        ]
        if args.reid_bf16:
            paths.append(OnnxRuntimePath(repository, class_names, rect=True, tag="bf16", reid_bf16=True,
                                         workloads=("reid@32",), **ort_kw))  # fmt: skip
        if "ensemble" in servers:
            paths.append(TritonPath(servers["ensemble"].grpc_url, protocol="grpc", tag="ensemble",
                                    workloads=("pose+threat",)))  # fmt: skip
        for tag in [t for t in servers if t.startswith("concurrent")]:
            paths.append(TritonPath(servers[tag].grpc_url, protocol="grpc", tag=tag, workloads=("pose+threat",)))
        for tag in [t for t in servers if t in variants]:  # a variant may change OSNet's layout too
            paths.append(TritonPath(servers[tag].grpc_url, protocol="grpc", tag=tag))
            if tag == "reidbf16":
                paths.append(TritonPath(servers[tag].grpc_url, protocol="grpc", transport="shm", tag=tag,
                                        workloads=("reid@32",)))  # fmt: skip
            if not args.no_per_frame:
                paths.append(TritonPath(servers[tag].grpc_url, protocol="grpc", tag=f"{tag}_frame",
                                        workloads=("pose+threat",), per_frame="analyze_frame"))  # fmt: skip
        if not args.no_per_frame:  # one frame's pose and threat at once, served and bare
            frame_kw = {**ort_kw, "intra_op_threads": 1, "workloads": ("pose+threat",)}  # side by side, as served
            paths.append(OnnxRuntimePath(repository, class_names, rect=True, tag="frame", per_frame=True, **frame_kw))
            paths.append(TritonPath(server.grpc_url, protocol="grpc", tag="frame", workloads=("pose+threat",),
                                    per_frame="analyze_frame"))  # fmt: skip
            paths.append(TritonPath(server.grpc_url, protocol="grpc", tag="enrich", workloads=("pose+threat",),
                                    per_frame="enrich"))  # fmt: skip
        if "int8" in servers:
            paths.append(OnnxRuntimePath(repository, class_names, rect=True, onnx=int8_onnx, tag="int8",
                                         workloads=("pose+threat",), **ort_kw))  # fmt: skip
            paths.append(TritonPath(servers["int8"].grpc_url, protocol="grpc", tag="int8",
                                    workloads=("pose+threat",)))  # fmt: skip
            if not args.no_per_frame:
                paths.append(OnnxRuntimePath(repository, class_names, rect=True, onnx=int8_onnx, tag="int8_frame",
                                             per_frame=True, **frame_kw))  # fmt: skip
                paths.append(TritonPath(servers["int8"].grpc_url, protocol="grpc", tag="int8_frame",
                                        workloads=("pose+threat",), per_frame="analyze_frame"))  # fmt: skip
        images = photos()
        crops = person_crops(CROP_BATCH)
        # The server path uses its configured default threshold; set the in-process paths to the same.
        if abs(args.conf - 0.5) > 1e-9:
            _log("note: the server's default conf is 0.5; --conf only changes the in-process paths")

        def pose_threat(path):
            def item(i: int, sink: dict) -> int:
                data = images[i % len(images)]
                if getattr(path, "per_frame", False):
                    timed(sink, "frame", lambda: path.frame(data))
                    return 1
                timed(sink, "pose", lambda: path.pose(data))
                timed(sink, "threat", lambda: path.threat(data))
                return 1

            return item

        def reid(path):
            def item(i: int, sink: dict) -> int:
                return path.reid(crops)

            return item

        workloads = {}
        if not args.no_pose:
            workloads["pose+threat"] = pose_threat
        if not args.no_reid:
            workloads["reid@32"] = reid
        _log("warming up every path")
        for path in paths:
            if "pose+threat" in workloads:
                for data in images:
                    path.pose(data)
                    path.threat(data)
                    if getattr(path, "per_frame", False):
                        path.frame(data)
                run_cell(pose_threat(path), max(concs), 0.01)
            if "reid@32" in getattr(path, "workloads", workloads):
                path.reid(crops)
                run_cell(reid(path), max(concs), 0.01)
        cells: dict[str, dict[int, dict[str, Cell]]] = {
            w: {c: {path.name: Cell() for path in paths if w in getattr(path, "workloads", workloads)} for c in concs}
            for w in workloads
        }
        rss_before = server.rss_bytes()
        for r in range(rounds):
            for w, make in workloads.items():
                for c in concs:
                    order = paths if r % 2 == 0 else list(reversed(paths))
                    for path in order:
                        if w not in getattr(path, "workloads", workloads):
                            continue
                        gc.collect()
                        cells[w][c][path.name].add(run_cell(make(path), c, cell_s))
                    _log(f"round {r + 1}/{rounds} {w} conc {c} done")
        rss_after = server.rss_bytes()
    finally:
        for path in paths:
            path.close()
        for extra in servers.values():
            extra.stop()
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
            "baseline_b": "b_onnxruntime_rect (same rect letterbox as the served path)",
            "int8_gate": gate,
            "variants": variants,
        },
        "cells": {
            w: {str(c): {name: cell.summary() for name, cell in by_path.items()} for c, by_path in by_conc.items()}
            for w, by_conc in cells.items()
        },
    }
    analyse(results, seed_path="a_seed_torch", ort_path="b_onnxruntime_rect",
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
