"""Where the time goes: bytes in -> typed results out, pose + threat, on the cpu target.

Two views of the same photos (Ultralytics' bus.jpg and zidane.jpg), random-init checkpoints unless
given:

1. **In process, one thread** (what each stage costs on its own): decode, letterbox (square and
   rect), onnxruntime pose/threat, postprocessing (NMS, scaling, pose rules / taxonomy).
2. **Served**, at each concurrency: the client's end-to-end latency and throughput of
   ``estimate_poses`` + ``detect_threats`` over gRPC, and Triton's statistics extension per
   composing model (queue, compute input/infer/output per request, execution count), read before
   and after the cell. ``compute_infer`` of a Python-backend model is its ``execute`` (for the
   onnxruntime models that includes ``session.run``); compute input/output are the copies between
   Triton and the stub; what is left between the ensemble's own time and the sum of its steps is
   the ensemble scheduler; what is left between the client's latency and the ensemble's is
   transport + (de)serialisation + the client's result building.

Usage::

    python benchmarks/profile_pipeline.py --cell-s 8 --concurrency 1,4,8 [--rect]

Writes ``benchmarks/results/profile.json`` and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "0")
os.environ.setdefault("YOLO_VERBOSE", "False")
os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="yolo-config-"))

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _paths_common import photos, run_cell, timed

from enrichment_light.core import contract as ct

RESULTS_DIR = Path(__file__).resolve().parent / "results"
_STEP_MODELS = (ct.PREPROCESS, ct.POSE_MODEL, ct.POSE_POSTPROCESS, ct.THREAT_MODEL, ct.THREAT_POSTPROCESS)
_ALL = (ct.POSE_ENSEMBLE, ct.THREAT_ENSEMBLE, *_STEP_MODELS)


def _median_ms(fn, n: int = 15) -> float:
    fn()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return round(statistics.median(times) * 1e3, 2)


def in_process(repository: Path, class_names: list[str]) -> dict[str, dict[str, float]]:
    """Median ms of each stage, one thread, per photo."""
    import onnxruntime as ort

    from enrichment_light.core.processing.threat import ThreatTaxonomy

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    opts.inter_op_num_threads = 1
    sessions = {
        m: ort.InferenceSession(str(repository / m / "1" / "model.onnx"), opts, providers=["CPUExecutionProvider"])
        for m in (ct.POSE_MODEL, ct.THREAT_MODEL)
    }
    mapping = ThreatTaxonomy.load().resolve(class_names)
    out: dict[str, dict[str, float]] = {}
    for name, data in zip(("bus.jpg", "zidane.jpg"), photos(), strict=True):
        out[name] = _stages(data, sessions, mapping)
    return out


def _stages(data: bytes, sessions: dict, mapping) -> dict[str, float]:
    from enrichment_light.core.processing import image as im
    from enrichment_light.core.processing.detection import postprocess_detections, postprocess_pose
    from enrichment_light.core.processing.threat import select_threats

    image = im.decode_image(data)
    boxed, info = im.letterbox(image)
    row = {
        "decode": _median_ms(lambda: im.decode_image(data)),
        "letterbox_square": _median_ms(lambda: im.letterbox(image)),
    }
    shapes = {"640x640": boxed}
    if hasattr(im, "letterbox_rect"):
        rboxed, _ = im.letterbox_rect(image)
        row["letterbox_rect"] = _median_ms(lambda: im.letterbox_rect(image))
        shapes[f"{rboxed.shape[0]}x{rboxed.shape[1]}"] = rboxed
    for m, key in ((ct.POSE_MODEL, "pose"), (ct.THREAT_MODEL, "threat")):
        s = sessions[m]
        dynamic_hw = not isinstance(s.get_inputs()[0].shape[1], int)
        for shape, x in shapes.items():
            if shape == "640x640" or dynamic_hw:
                row[f"ort_{key}_{shape}"] = _median_ms(lambda s=s, x=x: s.run(None, {"images": x[None]}), n=7)
    raw_p = sessions[ct.POSE_MODEL].run(None, {"images": boxed[None]})[0]
    raw_t = sessions[ct.THREAT_MODEL].run(None, {"images": boxed[None]})[0]
    lb = info.to_array()[None]
    row["post_pose"] = _median_ms(lambda: postprocess_pose(raw_p, lb, conf=0.5, iou=0.7, max_det=100))
    row["post_threat"] = _median_ms(
        lambda: [select_threats(d, mapping) for d in postprocess_detections(raw_t, lb, conf=0.5, iou=0.7)]
    )
    return row


def _stats(client) -> dict[str, dict[str, int]]:
    got = client.get_inference_statistics(as_json=True)
    out = {}
    for m in got.get("model_stats", []):
        if m["name"] not in _ALL:
            continue
        inf = m["inference_stats"]
        row = {"inference_count": int(m.get("inference_count", 0)), "execution_count": int(m.get("execution_count", 0))}
        for key in ("success", "queue", "compute_input", "compute_infer", "compute_output"):
            row[f"{key}_ns"] = int(inf.get(key, {}).get("ns", 0))
            row[f"{key}_count"] = int(inf.get(key, {}).get("count", 0))
        out[m["name"]] = row
    return out


def served(url: str, concs: list[int], cell_s: float) -> dict[str, object]:
    """Client latency/throughput and per-model server time per request, per concurrency."""
    import tritonclient.grpc as grpcclient

    from enrichment_light.client import EnrichmentClient

    images = photos()
    admin = grpcclient.InferenceServerClient(url.rsplit("//", maxsplit=1)[-1])
    client = EnrichmentClient(url, protocol="grpc", timeout_s=120.0, retries=0, max_workers=max(concs))
    for data in images:
        client.estimate_poses(data)
        client.detect_threats(data)

    def item(i: int, sink: dict) -> int:
        data = images[i % len(images)]
        timed(sink, "pose", lambda: client.estimate_poses(data))
        timed(sink, "threat", lambda: client.detect_threats(data))
        return 1

    out: dict[str, object] = {}
    try:
        for c in concs:
            before = _stats(admin)
            cell = run_cell(item, c, cell_s)
            after = _stats(admin)
            per_model = {}
            for m in _ALL:
                a, b = after.get(m), before.get(m)
                if a is None or b is None:
                    continue
                n = a["success_count"] - b["success_count"]
                execs = a["execution_count"] - b["execution_count"]
                row = {"requests": n, "executions": execs}
                for key in ("success", "queue", "compute_input", "compute_infer", "compute_output"):
                    row[f"{key}_ms"] = round((a[f"{key}_ns"] - b[f"{key}_ns"]) / max(n, 1) / 1e6, 2)
                per_model[m] = row
            out[str(c)] = {"client": cell.summary(), "models": per_model}
    finally:
        client.close()
        admin.close()
    return out


def markdown(result: dict) -> str:
    lines = ["**In process, one thread, median ms**", ""]
    for photo, row in result["in_process"].items():
        lines.append(f"- {photo}: " + ", ".join(f"{k} {v}" for k, v in row.items()))
    lines += ["", "**Served (gRPC, estimate_poses + detect_threats), ms per request**", ""]
    lines.append("| conc | images/s | client pose | client threat | model | requests/execs | queue | in | infer | out "
                 "| total |")  # fmt: skip
    lines.append("|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|")
    for c, cell in result["served"].items():
        cl = cell["client"]
        first = True
        for m, row in cell["models"].items():
            head = (f"| {c} | {cl['throughput_per_s']} | {cl.get('pose_median_ms')} | {cl.get('threat_median_ms')} "
                    if first else "| | | | ")  # fmt: skip
            first = False
            lines.append(
                head + f"| {m} | {row['requests']}/{row['executions']} | {row['queue_ms']} | "
                f"{row['compute_input_ms']} | {row['compute_infer_ms']} | {row['compute_output_ms']} | "
                f"{row['success_ms']} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cell-s", type=float, default=8.0)
    p.add_argument("--concurrency", default="1,4,8")
    p.add_argument("--intra-op-threads", type=int, default=2)
    p.add_argument("--out", default=str(RESULTS_DIR / "profile.json"))
    p.add_argument("--skip-in-process", action="store_true")
    args = p.parse_args(argv)
    concs = [int(c) for c in args.concurrency.split(",")]

    from _paths_seed import load_models
    from compare import build

    from enrichment_light.server import EmbeddedServer

    with tempfile.TemporaryDirectory(prefix="enrichment-profile-") as tmp:
        work = Path(tmp)
        models = load_models({})
        repository, class_names = build(models, work, args.intra_op_threads)
        result: dict[str, object] = {"in_process": {} if args.skip_in_process else in_process(repository, class_names)}
        server = EmbeddedServer(repository, startup_timeout_s=180, log_path=work / "tritonserver.log")
        server.start()
        try:
            result["served"] = served(server.grpc_url, concs, args.cell_s)
        finally:
            server.stop()
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
