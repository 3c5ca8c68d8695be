"""Export timing and ONNX Runtime vs PyTorch CPU latency of the three exported models.

Usage::

    python benchmarks/bench_export.py [--threads 2] [--runs 20] [--out benchmarks/results/export.json]

Checkpoints are random-init (built from the Ultralytics YAMLs and OSNet-x0.25, saved as .pt/.pth
files) so the run needs no network; latency does not depend on the weights' values.
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

import numpy as np
import torch


def _median_ms(fn, runs: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--out", default="benchmarks/results/export.json")
    args = parser.parse_args()

    import onnxruntime as ort
    from ultralytics import YOLO

    from enrichment_export import onnx_export as ox
    from enrichment_export.osnet import load_osnet_x0_25
    from enrichment_light.core import contract

    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="bench-export-"))
    os.environ.setdefault("ENRICHMENT_MODEL_ROOTS", os.pathsep.join([str(work), os.getcwd()]))
    ckpts = {
        contract.POSE_MODEL: work / "yolov8n-pose.pt",
        contract.THREAT_MODEL: work / "yolov8n.pt",
        contract.REID_MODEL: work / "osnet_x0_25.pth",
    }
    YOLO("yolov8n-pose.yaml").save(str(ckpts[contract.POSE_MODEL]))
    YOLO("yolov8n.yaml").save(str(ckpts[contract.THREAT_MODEL]))
    torch.save({"state_dict": ox.untrained_model(contract.REID_MODEL).state_dict()}, ckpts[contract.REID_MODEL])

    export_s = {}
    results = {}
    t0 = time.perf_counter()
    for name, ckpt in ckpts.items():
        start = time.perf_counter()
        results[name] = ox.export_onnx(name, ckpt, work / name / "1" / "model.onnx")
        export_s[name] = time.perf_counter() - start
    export_total = time.perf_counter() - t0

    latency = {}
    for name, result in results.items():
        spec = contract.model_spec(name)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = args.threads
        opts.inter_op_num_threads = 1
        session = ort.InferenceSession(str(result.path), opts, providers=["CPUExecutionProvider"])
        if name == contract.REID_MODEL:
            module = ox.OSNetUint8Wrapper(load_osnet_x0_25(ckpts[name])).eval()
        else:
            module = ox.YoloUint8Wrapper(ox._prepare_yolo(ox.load_yolo_checkpoint(ckpts[name]))).eval()
        latency[name] = {}
        for batch in (1, 8):
            x = np.random.default_rng(batch).integers(0, 256, (batch, *spec.inputs[0].shape), dtype=np.uint8)
            xt = torch.from_numpy(x)
            ort_ms = _median_ms(lambda s=session, x=x, n=spec.inputs[0].name: s.run(None, {n: x}), args.runs)
            with torch.inference_mode():
                torch_ms = _median_ms(lambda m=module, xt=xt: m(xt), args.runs)
            latency[name][f"batch{batch}"] = {
                "onnxruntime_ms": round(ort_ms, 2),
                "torch_ms": round(torch_ms, 2),
                "torch_over_ort": round(torch_ms / ort_ms, 2),
            }

    report = {
        "threads": args.threads,
        "runs": args.runs,
        "cpu_count": os.cpu_count(),
        "load_average": [round(v, 2) for v in os.getloadavg()],
        "torch": torch.__version__,
        "onnxruntime": ort.__version__,
        "export_seconds": {k: round(v, 2) for k, v in export_s.items()},
        "export_total_seconds": round(export_total, 2),
        "onnx_bytes": {k: r.size_bytes for k, r in results.items()},
        "latency": latency,
    }
    print(json.dumps(report, indent=2))
    print("\n| model | batch | onnxruntime ms | torch ms | torch / ort |\n|---|---|---|---|---|")
    for name, per in latency.items():
        for b, v in per.items():
            print(f"| {name} | {b[5:]} | {v['onnxruntime_ms']} | {v['torch_ms']} | {v['torch_over_ort']} |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
