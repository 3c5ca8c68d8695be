"""The client half of deploy/gpu-smoke.sh: real requests and the backend check, through our client.

Sends pose, threat, reid and enrich for one real photo (the plan verifier's packaged letterboxed
sample, so the host needs no Ultralytics), and checks that both detectors are served by TensorRT
according to the repository manifest and to the model configs Triton reports. Writes the photo as
PNG for perf_analyzer's input. Exit status 0 only when every request and check passed.

    python deploy/gpu_smoke_check.py --url 127.0.0.1:8001 --manifest repository.json --frame-out frame.png
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

PLAN_MODELS = ("yolov8n_pose", "yolov8n_threat")


def backend_problems(backends: Mapping[str, Any], manifest: Mapping[str, Any]) -> list[str]:
    """Why the detectors are not served by TensorRT, per the model configs and the manifest.

    Args:
        backends: ``{model: BackendInfo}`` from ``EnrichmentClient.backend_info`` (``.backend``, ``.platform``).
        manifest: ``repository.json`` of the served repository.

    Returns:
        One line per problem; empty when both detectors run as TensorRT plans.
    """
    problems = []
    models = manifest.get("models", {})
    for name in PLAN_MODELS:
        entry = models.get(name, {})
        if entry.get("backend") != "tensorrt":
            why = entry.get("fallback", {}).get("reason", "no fallback reason recorded")
            problems.append(f"{name}: manifest backend is {entry.get('backend')!r}, not 'tensorrt' ({why})")
        info = backends.get(name)
        if info is None or info.backend != "tensorrt" or info.platform != "tensorrt_plan":
            got = "missing" if info is None else f"{info.backend!r} (platform {info.platform!r})"
            problems.append(f"{name}: Triton serves it with {got}, not tensorrt_plan")
    return problems


def main(argv: list[str] | None = None) -> int:
    """Run the requests and checks; print one line per step."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="127.0.0.1:8001", help="Triton gRPC address")
    parser.add_argument("--manifest", required=True, help="repository.json of the served repository")
    parser.add_argument("--frame-out", help="write the sample photo here as PNG (perf_analyzer input)")
    parser.add_argument("--timeout-s", type=float, default=120.0)
    args = parser.parse_args(argv)

    import cv2
    import numpy as np

    from enrichment_export.tensorrt_plan import load_samples
    from enrichment_light import EnrichmentClient, EnrichmentError

    frame = load_samples()["images"][0]  # bus.jpg letterboxed, RGB
    if args.frame_out:
        ok, png = cv2.imencode(".png", np.ascontiguousarray(frame[:, :, ::-1]))
        if not ok:
            print("FAILED could not encode the sample frame", file=sys.stderr)
            return 1
        Path(args.frame_out).write_bytes(png.tobytes())
    manifest = json.loads(Path(args.manifest).read_text(encoding="utf-8"))
    failures = []
    with EnrichmentClient(args.url, protocol="grpc", timeout_s=args.timeout_s) as client:
        try:
            client.wait_until_ready(args.timeout_s)
            calls = {
                "pose": lambda: f"{len(client.estimate_poses(frame))} person(s)",
                "threat": lambda: f"{len(client.detect_threats(frame).threats)} threat(s)",
                "reid": lambda: f"{len(client.extract_embeddings(frame, [[80, 100, 240, 560]]))} embedding(s)",
                "enrich": lambda: f"{len(client.enrich(frame).persons)} person(s) enriched",
            }
            for name, call in calls.items():
                start = time.perf_counter()
                try:
                    what = call()
                except EnrichmentError as err:
                    failures.append(f"{name}: {err}")
                    continue
                print(f"ok {name}: {what} in {(time.perf_counter() - start) * 1e3:.1f} ms (first call)")
            failures += backend_problems(client.backend_info(), manifest)
        except EnrichmentError as err:
            failures.append(str(err))
    for line in failures:
        print(f"FAILED {line}", file=sys.stderr)
    if not failures:
        print("ok detectors served by tensorrt (manifest and model configs)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
