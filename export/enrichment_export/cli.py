"""``enrichment-export``: ONNX export, weights download, TensorRT plans (and the repository builder).

Subcommands are registered in :data:`SUBCOMMANDS`: each is a function that adds its parser to the
argparse subparsers and sets ``func`` (the handler, returning an exit code). Other modules can add
theirs with :func:`register_subcommand`; ``build-repository`` comes from
:mod:`enrichment_export.repository` when that module is present.

Examples::

    enrichment-export onnx --untrained --out-dir model_repository
    enrichment-export onnx --pose yolov8n-pose.pt --threat /models/threat.pt --reid osnet_x0_25_msmt17.pt
    enrichment-export onnx --pose yolov8n-pose.pt --threat threat.pt --precision int8 --calibration frames/
    enrichment-export fetch yolov8n-pose.pt yolov8n.pt
    enrichment-export plan --model yolov8n_pose --check-only --gpu-cc 8.6 --trt-version 10.5.0
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from enrichment_light.core import contract
from enrichment_light.core.errors import EnrichmentError

LOGGER = logging.getLogger("enrichment_export")

ParserBuilder = Callable[[Any], None]
SUBCOMMANDS: dict[str, ParserBuilder] = {}
# Modules that may contribute subcommands through ``add_<name>_parser(subparsers)`` functions.
PLAN_CHECK_STALE_EXIT = 3  # `plan --check-only`: some plan is missing or stale
PLUGINS: dict[str, str] = {"build-repository": "enrichment_export.repository:add_build_repository_parser"}
_MODEL_FLAGS = {"pose": contract.POSE_MODEL, "threat": contract.THREAT_MODEL, "reid": contract.REID_MODEL}


def register_subcommand(name: str, builder: ParserBuilder) -> None:
    """Register a subcommand: `builder(subparsers)` adds a parser and sets ``func=handler(args) -> int``."""
    SUBCOMMANDS[name] = builder


def onnx_path_for(out_dir: str | os.PathLike[str], model_name: str) -> Path:
    """``<out_dir>/<model>/1/model.onnx``: the Triton repository layout the exporter writes."""
    return Path(out_dir) / model_name / "1" / "model.onnx"


# --- onnx ---------------------------------------------------------------------------------------


def _add_onnx_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("onnx", help="export pose / threat / re-id models to ONNX")
    p.add_argument("--pose", metavar="WEIGHTS", help="pose checkpoint path or official name (yolov8n-pose.pt)")
    p.add_argument("--threat", metavar="WEIGHTS", help="detect checkpoint path or official name (yolov8n.pt)")
    p.add_argument("--reid", metavar="WEIGHTS", help="OSNet-x0.25 checkpoint path or official name")
    p.add_argument("--all", action="store_true", help="export all three (official weights unless given)")
    p.add_argument("--untrained", action="store_true", help="random-init models from the YAMLs (offline smoke test)")
    p.add_argument("--out-dir", default="model_repository", help="writes <out-dir>/<model>/1/model.onnx")
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--no-simplify", action="store_true", help="skip onnxslim")
    p.add_argument("--no-download", action="store_true", help="use only local files and the weights cache")
    p.add_argument("--weights-dir", help="weights cache (default $ENRICHMENT_LIGHT_WEIGHTS_DIR or ~/.cache/...)")
    q = p.add_argument_group("INT8 (docs/int8.md)")
    q.add_argument("--precision", choices=("fp32", "int8"), default="fp32", help="int8: static QDQ (onnxruntime)")
    q.add_argument("--calibration", metavar="DIR", help="your frames to calibrate on (default: packaged samples)")
    q.add_argument("--holdout", metavar="DIR", help="held-out frames for the accuracy gate (default: every 4th frame)")
    q.add_argument("--force-accuracy", action="store_true", help="install INT8 even when the accuracy gate fails")
    q.add_argument("--max-calibration-frames", type=int, default=64, help="most frames used (evenly spaced)")
    q.add_argument("--gate-conf", type=float, default=0.25, help="score threshold of the gate's detections")
    q.add_argument("--min-recall", type=float, default=0.95, help="gate: INT8 recall vs FP32 (IoU>=0.5, same class)")
    q.add_argument("--min-precision", type=float, default=0.95, help="gate: INT8 precision vs FP32")
    q.add_argument("--max-score-diff", type=float, default=0.05, help="gate: mean |score diff| of matched detections")
    q.add_argument("--max-keypoint-error", type=float, default=4.0, help="gate: pose mean keypoint error, pixels")
    q.add_argument("--min-cosine", type=float, default=0.99, help="gate: OSNet min cosine INT8 vs FP32")
    p.set_defaults(func=_run_onnx)


def _int8_options(args: argparse.Namespace) -> dict[str, Any]:
    """Check the INT8 arguments before any heavy work; the keyword arguments of ``export_int8``."""
    from enrichment_export import quantize

    if args.precision != "int8":
        given = [f for f in ("calibration", "holdout") if getattr(args, f)] + (["force_accuracy"] * args.force_accuracy)
        if given:
            raise SystemExit(f"--{given[0].replace('_', '-')} only applies with --precision int8")
        return {}
    if args.max_calibration_frames < 1:
        raise SystemExit(f"--max-calibration-frames must be >= 1, got {args.max_calibration_frames}")
    if not 0.0 < args.gate_conf < 1.0:
        raise SystemExit(f"--gate-conf must be in (0, 1), got {args.gate_conf}")
    if args.holdout and not args.calibration:
        raise SystemExit("--holdout needs --calibration (the packaged samples come with their own held-out frames)")
    for folder in (args.calibration, args.holdout):
        if folder:
            quantize.image_files(folder)  # CalibrationError names the folder
    thresholds = quantize.AccuracyThresholds(
        min_recall=args.min_recall,
        min_precision=args.min_precision,
        max_mean_score_diff=args.max_score_diff,
        max_keypoint_error_px=args.max_keypoint_error,
        min_cosine=args.min_cosine,
    )
    return {
        "calibration_dir": args.calibration,
        "holdout_dir": args.holdout,
        "thresholds": thresholds,
        "force": args.force_accuracy,
        "max_calibration_frames": args.max_calibration_frames,
        "conf": args.gate_conf,
    }


def _run_onnx(args: argparse.Namespace) -> int:
    from enrichment_export import onnx_export, weights

    from_flags = {_MODEL_FLAGS[k]: getattr(args, k) for k in _MODEL_FLAGS if getattr(args, k)}
    if args.untrained and from_flags:
        raise SystemExit("--untrained builds random-init models; do not combine it with weights")
    if args.all or args.untrained:
        selected = dict.fromkeys(contract.INFERENCE_MODELS)
        selected.update(from_flags)
    else:
        selected = from_flags
    if not selected:
        raise SystemExit("nothing to export: give --pose/--threat/--reid WEIGHTS, --all or --untrained")
    onnx_export._check_opset(args.opset)  # fail before any download or heavy work
    int8 = _int8_options(args)
    if int8 and contract.REID_MODEL in selected:
        LOGGER.warning(
            "%s: INT8 OSNet ran at 0.55-0.74x the FP32 speed under onnxruntime on the CPU it was measured on "
            "(docs/int8.md); export it in FP32 unless you measured a gain on yours",
            contract.REID_MODEL,
        )
    for model_name, source in selected.items():
        if args.untrained:
            src: Any = onnx_export.untrained_model(model_name)
        else:
            name = source or weights.DEFAULT_WEIGHTS[model_name]
            src = weights.resolve_weights(name, cache_dir=args.weights_dir, download=not args.no_download)
        out = onnx_path_for(args.out_dir, model_name)
        if int8:
            _export_int8(model_name, src, out, args, int8)
            continue
        result = onnx_export.export_onnx(model_name, src, out, opset=args.opset, simplify=not args.no_simplify)
        print(f"{model_name:16s} {result.path}  sha256 {result.sha256[:16]}  {result.seconds:.1f}s")
    return 0


def _export_int8(model_name: str, src: Any, out: Path, args: argparse.Namespace, int8: dict[str, Any]) -> None:
    """FP32 export into a temporary folder, then calibration, quantisation and the gate into `out`."""
    import tempfile

    from enrichment_export import onnx_export, quantize

    with tempfile.TemporaryDirectory(prefix="enrichment-fp32-") as tmp:
        fp32 = onnx_export.export_onnx(
            model_name, src, Path(tmp) / "model.onnx", opset=args.opset, simplify=not args.no_simplify
        )
        result = quantize.export_int8(model_name, fp32.path, out, **int8)
    print(next(quantize.iter_reports([result])))


# --- fetch --------------------------------------------------------------------------------------


def _add_fetch_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("fetch", help="download official checkpoints by name into the weights cache")
    p.add_argument("names", nargs="*", help="registry names (default: the three default checkpoints)")
    p.add_argument("--list", action="store_true", help="list the known names and exit")
    p.add_argument("--weights-dir", help="weights cache (default $ENRICHMENT_LIGHT_WEIGHTS_DIR or ~/.cache/...)")
    p.add_argument("--force", action="store_true", help="download again even when cached")
    p.add_argument("--timeout", type=float, default=60.0, help="socket timeout in seconds")
    p.set_defaults(func=_run_fetch)


def _run_fetch(args: argparse.Namespace) -> int:
    from enrichment_export import weights

    registry = weights.load_registry()
    if args.list:
        for entry in registry.values():
            sha = entry.sha256 or "unpublished (trusted on first use)"
            print(f"{entry.name:28s} {entry.model:16s} sha256 {sha}\n    {entry.description}")
        return 0
    names = args.names or list(weights.DEFAULT_WEIGHTS.values())
    unknown = [n for n in names if n not in registry]
    if unknown:
        raise SystemExit(f"unknown weights {unknown}; known: {sorted(registry)}")
    for name in names:
        path = weights.fetch_weights(
            name, cache_dir=args.weights_dir, registry=registry, timeout_s=args.timeout, force=args.force
        )
        print(f"{name:28s} {path}")
    return 0


# --- plan ---------------------------------------------------------------------------------------


def _add_plan_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("plan", help="build TensorRT plans (GPU + TensorRT needed unless --check-only)")
    p.add_argument(
        "--model",
        action="append",
        choices=contract.INFERENCE_MODELS,
        help="model(s) to build (repeatable; default: the two detectors, which the tensorrt target serves as plans)",
    )
    p.add_argument("--onnx", help="ONNX file (only with one --model; default: found in --repository)")
    p.add_argument(
        "--repository",
        default="model_repository",
        help="where the exported ONNX files are: <dir>/<model>.onnx or <dir>/<model>/1/model.onnx",
    )
    p.add_argument("--plan", help="plan file (one --model); default <cache-dir>/<model>/model.sm<XY>.plan")
    p.add_argument("--cache-dir", help="plan cache (default $ENRICHMENT_TENSORRT_CACHE_DIR or /cache/tensorrt)")
    prec = p.add_mutually_exclusive_group()
    prec.add_argument("--fp32", action="store_true", help="FP32 plan (default FP16, or *_TENSORRT_FP16)")
    prec.add_argument("--fp16", action="store_true", help="FP16 plan")
    prec.add_argument("--int8", action="store_true", help="INT8 plan from a QDQ ONNX (a QDQ ONNX is always INT8)")
    p.add_argument("--min-batch", type=int, default=1)
    p.add_argument("--opt-batch", type=int, default=4)
    p.add_argument("--max-batch", type=int, default=8)
    p.add_argument("--workspace-mib", type=int, default=1024, help="builder workspace limit")
    p.add_argument("--timing-cache", help="timing cache file (default next to the plan)")
    p.add_argument(
        "--check-only",
        action="store_true",
        help=f"report what would be built and why; build nothing; exit {PLAN_CHECK_STALE_EXIT} if anything would be",
    )
    p.add_argument("--force", action="store_true", help="rebuild even when the plan is up to date")
    p.add_argument("--gpu-cc", help="assume this compute capability (e.g. 8.6) instead of querying the GPU")
    p.add_argument("--trt-version", help="assume this TensorRT version instead of importing tensorrt")
    p.add_argument("--gpu-name", default="", help="GPU name recorded with --gpu-cc")
    p.add_argument(
        "--allowed-root", dest="allowed_roots", action="append", help="allowed root for every path (repeatable)"
    )
    p.set_defaults(func=_run_plan)


def _device_from_args(args: argparse.Namespace) -> Any:
    from enrichment_export import tensorrt_plan as tp

    if args.gpu_cc or args.trt_version:
        if not (args.gpu_cc and args.trt_version):
            raise SystemExit("--gpu-cc and --trt-version go together")
        if not args.check_only:
            raise SystemExit("--gpu-cc/--trt-version only make sense with --check-only (a build needs the real GPU)")
        return tp.DeviceInfo(tp.parse_compute_capability(args.gpu_cc), args.gpu_name or "assumed", args.trt_version)
    return tp.detect_device_info()


def _plan_onnx(args: argparse.Namespace, model_name: str) -> Path:
    from enrichment_export.repository import find_onnx, onnx_candidates

    if args.onnx:
        return Path(args.onnx)
    found = find_onnx(args.repository, model_name)
    if found is None:
        tried = " or ".join(str(c) for c in onnx_candidates(args.repository, model_name)[:2])
        raise FileNotFoundError(f"no ONNX file for {model_name}: expected {tried} (export it: enrichment-export onnx)")
    return found


def _run_plan(args: argparse.Namespace, *, device: Any = None, environ: Any = None) -> int:
    """Build (or check) one plan per model, each with its own outcome.

    A failure is reported and recorded next to the model's plans (``build-result.json``), and the
    loop goes on with the next model.
    """
    from enrichment_export import tensorrt_plan as tp
    from enrichment_export.repository import PLAN_MODELS

    models = args.model or list(PLAN_MODELS)
    if (args.onnx or args.plan) and len(models) != 1:
        raise SystemExit("--onnx and --plan need exactly one --model")
    profile = tp.BatchProfile(args.min_batch, args.opt_batch, args.max_batch)
    device = device or _device_from_args(args)
    failures = stale = 0
    for model_name in models:
        settings = tp.tensorrt_settings_from_env(model_name, environ)
        cache_dir = Path(args.cache_dir or settings.cache_dir)
        record_dir = cache_dir / model_name
        try:
            precision = "fp32" if args.fp32 else "fp16" if args.fp16 else "int8" if args.int8 else settings.precision
            request = tp.make_plan_request(
                model_name,
                _plan_onnx(args, model_name),
                device=device,
                plan_path=args.plan or settings.engine_path,
                cache_dir=cache_dir,
                precision=precision,
                profile=profile,
                workspace_bytes=args.workspace_mib << 20,
                timing_cache=args.timing_cache,
                allowed_roots=args.allowed_roots,
            )
            record_dir = request.plan_path.parent
            outcome = tp.ensure_plan(request, device, force=args.force, check_only=args.check_only)
        except (EnrichmentError, ValueError, RuntimeError, OSError, ImportError) as err:
            print(f"FAILED {model_name}: {err}", file=sys.stderr)
            failures += 1
            if not args.check_only:
                _record(tp, record_dir, model_name, "failed", str(err))
            continue
        if outcome.action == "built":
            print(f"built {outcome.plan_path} ({outcome.decision.reason})")
        else:
            stale += outcome.action == "would-build"
            print(outcome.decision.describe())
        if not args.check_only:
            _record(tp, record_dir, model_name, outcome.action, outcome.decision.reason)
    if failures:
        return 1
    return PLAN_CHECK_STALE_EXIT if stale else 0


def _record(tp: Any, plan_dir: Path, model_name: str, status: str, reason: str) -> None:
    try:
        tp.write_build_record(plan_dir, model_name, status=status, reason=reason)
    except OSError as err:  # the outcome is already printed; a read-only cache must not hide it
        LOGGER.warning("could not record the %s outcome in %s: %s", model_name, plan_dir, err)


register_subcommand("onnx", _add_onnx_parser)
register_subcommand("fetch", _add_fetch_parser)
register_subcommand("plan", _add_plan_parser)


def _load_plugins() -> None:
    for name, target in PLUGINS.items():
        if name in SUBCOMMANDS:
            continue
        module_name, _, attr = target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as err:
            LOGGER.debug("subcommand %s unavailable: %s", name, err)
            continue
        builder = getattr(module, attr, None)
        if callable(builder):
            register_subcommand(name, builder)


def build_parser() -> argparse.ArgumentParser:
    """The ``enrichment-export`` argument parser with every registered subcommand."""
    _load_plugins()
    parser = argparse.ArgumentParser(prog="enrichment-export", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for builder in SUBCOMMANDS.values():
        builder(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; returns the exit code (2 on a usage error, 1 on a failure)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for var, value in (("YOLO_OFFLINE", "1"), ("YOLO_AUTOINSTALL", "0"), ("YOLO_VERBOSE", "False")):
        os.environ.setdefault(var, value)
    try:
        return int(args.func(args) or 0)
    except (EnrichmentError, ValueError, RuntimeError, OSError) as err:
        print(f"enrichment-export {args.command}: error: {err}", file=sys.stderr)
        return 1
    except ImportError as err:
        hint = (
            "pip install 'enrichment-light[plan]'"
            if args.command in ("plan", "build-repository")
            else ("pip install 'enrichment-light[export]'")
        )
        print(f"enrichment-export {args.command}: error: {err}; {hint}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
