"""TensorRT plans from the exported ONNX files: naming, staleness, sidecars, build and verification.

A plan only runs on the GPU architecture and TensorRT release it was built with, so plans are named
by compute capability (``model.sm86.plan``) and carry a sidecar JSON (``model.sm86.plan.json``) that
records the compute capability, GPU name, TensorRT version, precision, batch profile and the sha256
of the source ONNX. A plan whose sidecar matches the current GPU, TensorRT, ONNX, precision and
profile is reused; otherwise it is rebuilt (the original never rebuilt a stale engine).

A new plan is built into a temporary file, verified against ONNX Runtime on real letterboxed photos
(per channel group, and after NMS), and only then moved into place, so a plan that fails
verification is never installed.

The plan path needs no torch: device facts come from ``nvidia-smi``, GPU buffers from polygraphy,
reference outputs from onnxruntime (``pip install 'enrichment-light[plan]'``; TensorRT itself comes
with the NGC image). Only :func:`build_serialized_plan`, :func:`run_plan` and
:func:`detect_device_info` need a GPU; everything else takes the device facts, the builder and the
verifier as arguments, so it is tested without one.

Precision: FP16 by default; ``fp32`` clears TF32 too; an ONNX with Q/DQ nodes (``enrichment-export
onnx --precision int8``) is built as ``int8`` (TensorRT explicit quantisation) whatever was asked.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from enrichment_export.files import checked_path, sha256_file
from enrichment_export.steps import format_bytes, timed_step
from enrichment_light.core import contract
from enrichment_light.core.errors import ModelFileError
from enrichment_light.core.files import atomic_output
from enrichment_light.core.flags import env_flag

LOGGER = logging.getLogger(__name__)

DEFAULT_CACHE_DIR = Path("/cache/tensorrt")
CACHE_DIR_ENV = "ENRICHMENT_TENSORRT_CACHE_DIR"
PRECISIONS = ("fp16", "fp32", "int8")
DEFAULT_WORKSPACE_BYTES = 1 << 30
SIDECAR_VERSION = 1

# The original service's environment variables; both spellings are accepted for threat.
ENV_VARS: dict[str, dict[str, tuple[str, ...]]] = {
    contract.POSE_MODEL: {
        "use": ("POSE_USE_TENSORRT",),
        "path": ("POSE_TENSORRT_ENGINE_PATH",),
        "fp16": ("POSE_TENSORRT_FP16",),
    },
    contract.THREAT_MODEL: {
        "use": ("THREAT_USE_TENSORRT", "THREAT_DETECTOR_USE_TENSORRT"),
        "path": ("THREAT_TENSORRT_ENGINE_PATH",),
        "fp16": ("THREAT_TENSORRT_FP16",),
    },
}


# --- value types --------------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchProfile:
    """TensorRT optimisation profile over the batch dimension."""

    min: int = 1
    opt: int = 4
    max: int = 8

    def __post_init__(self) -> None:
        for name in ("min", "opt", "max"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"batch profile {name} must be a positive int, got {value!r}")
        if not self.min <= self.opt <= self.max:
            raise ValueError(f"batch profile needs min <= opt <= max, got {self.min}/{self.opt}/{self.max}")

    def to_dict(self) -> dict[str, int]:
        """JSON-safe dict."""
        return {"min": self.min, "opt": self.opt, "max": self.max}

    def __str__(self) -> str:
        return f"batch {self.min}/{self.opt}/{self.max}"


@dataclass(frozen=True)
class DeviceInfo:
    """The facts a plan depends on: GPU compute capability and name, TensorRT version."""

    compute_capability: tuple[int, int]
    gpu_name: str
    tensorrt_version: str

    def __post_init__(self) -> None:
        cc = tuple(self.compute_capability)
        if len(cc) != 2 or not all(isinstance(v, int) and 0 <= v < 100 for v in cc):
            raise ValueError(f"compute_capability must be (major, minor), got {self.compute_capability!r}")
        object.__setattr__(self, "compute_capability", cc)

    @property
    def cc(self) -> str:
        """Compute capability as ``"8.6"`` (the key of Triton's ``cc_model_filenames``)."""
        return f"{self.compute_capability[0]}.{self.compute_capability[1]}"


def parse_compute_capability(text: str) -> tuple[int, int]:
    """Parse ``"8.6"``, ``"86"`` or ``"sm86"`` into ``(8, 6)``."""
    m = re.fullmatch(r"(?:sm_?)?(\d+)\.(\d)|(?:sm_?)?(\d+)(\d)", text.strip().lower())
    if not m:
        raise ValueError(f"compute capability must look like '8.6' or 'sm86', got {text!r}")
    major, minor = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
    return int(major), int(minor)


def plan_filename(compute_capability: tuple[int, int]) -> str:
    """``model.sm86.plan`` for compute capability (8, 6)."""
    major, minor = compute_capability
    return f"model.sm{major}{minor}.plan"


def sidecar_path(plan_path: str | os.PathLike[str]) -> Path:
    """The sidecar JSON of a plan: ``model.sm86.plan.json``."""
    p = Path(plan_path)
    return p.with_name(p.name + ".json")


def default_plan_path(model_name: str, device: DeviceInfo, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """``<cache_dir>/<model_name>/model.sm<XY>.plan`` (the layout the repository builder reads)."""
    root = Path(cache_dir) if cache_dir is not None else DEFAULT_CACHE_DIR
    return root / model_name / plan_filename(device.compute_capability)


@dataclass(frozen=True)
class PlanSidecar:
    """The JSON written next to a plan."""

    compute_capability: str
    gpu_name: str
    tensorrt_version: str
    precision: str
    profile: dict[str, int]
    onnx_sha256: str
    model_name: str = ""
    input_name: str = ""
    build_time: str = ""
    build_seconds: float = 0.0
    workspace_bytes: int = 0
    plan_sha256: str = ""
    verification: dict[str, Any] = field(default_factory=dict)
    sidecar_version: int = SIDECAR_VERSION

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PlanSidecar:
        """Inverse of :meth:`to_dict`; unknown keys are ignored, missing required keys raise KeyError."""
        names = {f.name for f in dataclasses.fields(cls)}
        required = ("compute_capability", "tensorrt_version", "precision", "profile", "onnx_sha256")
        missing = [k for k in required if k not in data]
        if missing:
            raise KeyError(f"sidecar lacks {missing}")
        return cls(**{k: v for k, v in data.items() if k in names})


def write_sidecar(path: str | os.PathLike[str], sidecar: PlanSidecar) -> None:
    """Write a sidecar atomically."""
    target = Path(path)
    with atomic_output(target, suffix=".json") as tmp:
        tmp.write_text(json.dumps(sidecar.to_dict(), indent=2, sort_keys=True) + "\n", encoding="utf-8")


def read_sidecar(path: str | os.PathLike[str]) -> PlanSidecar:
    """Read a sidecar.

    Raises:
        ModelFileError: Missing, not JSON, or lacking required keys.
    """
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
        if not isinstance(data, Mapping):
            raise TypeError("not a JSON object")
        return PlanSidecar.from_dict(data)
    except FileNotFoundError as err:
        raise ModelFileError(f"plan sidecar {str(p)!r} does not exist") from err
    except (OSError, ValueError, TypeError, KeyError) as err:
        raise ModelFileError(f"plan sidecar {str(p)!r} is unreadable: {err}") from err


# --- request and staleness --------------------------------------------------------------------


@dataclass(frozen=True)
class PlanRequest:
    """Everything that defines one plan build; made by :func:`make_plan_request` (which validates)."""

    model_name: str
    onnx_path: Path
    plan_path: Path
    precision: str = "fp16"
    profile: BatchProfile = BatchProfile()
    workspace_bytes: int = DEFAULT_WORKSPACE_BYTES
    timing_cache: Path | None = None
    input_name: str = ""
    input_shape: tuple[int, ...] = ()  # without the batch dimension; the profile's max (see profile_shapes)
    input_dtype: str = "uint8"


def make_plan_request(
    model_name: str,
    onnx_path: str | os.PathLike[str],
    *,
    device: DeviceInfo,
    plan_path: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    precision: str = "fp16",
    profile: BatchProfile | None = None,
    workspace_bytes: int = DEFAULT_WORKSPACE_BYTES,
    timing_cache: str | os.PathLike[str] | None = None,
    allowed_roots: Any = None,
    has_qdq: bool | None = None,
) -> PlanRequest:
    """Check the arguments of a plan build and resolve its paths (cheap: no TensorRT needed).

    Args:
        model_name: An inference model of the contract.
        onnx_path: The exported ONNX file.
        device: The target device (see :func:`detect_device_info`).
        plan_path: Explicit plan file (e.g. from ``POSE_TENSORRT_ENGINE_PATH``); default
            :func:`default_plan_path` under `cache_dir`.
        cache_dir: Plan cache root (default ``/cache/tensorrt``).
        precision: ``fp16``, ``fp32`` or ``int8``. An ONNX with Q/DQ nodes is always built as
            ``int8``; ``int8`` without Q/DQ nodes is refused (no calibration here).
        profile: Batch profile; its max must not exceed the model's ``max_batch_size``.
        workspace_bytes: Builder workspace memory pool limit.
        timing_cache: Timing cache file; default ``<plan dir>/timing.sm<XY>.trt<version>.cache``.
        allowed_roots: Roots the ONNX path must lie in (``validate_model_path``).
        has_qdq: Whether the ONNX holds Q/DQ nodes (default: read the graph with ``onnx``).

    Raises:
        ValueError: Bad arguments.
        ModelFileError: The ONNX file is missing or its input differs from the contract.
    """
    if model_name not in contract.INFERENCE_MODELS:
        raise ValueError(f"model_name must be one of {list(contract.INFERENCE_MODELS)}, got {model_name!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    profile = profile or BatchProfile()
    spec = contract.model_spec(model_name)
    if profile.max > spec.max_batch_size:
        raise ValueError(f"batch profile max {profile.max} exceeds {model_name}'s max_batch_size {spec.max_batch_size}")
    if not isinstance(workspace_bytes, int) or workspace_bytes < (1 << 20):
        raise ValueError(f"workspace_bytes must be an int >= 1 MiB, got {workspace_bytes!r}")
    onnx_file = _check_onnx_path(onnx_path, allowed_roots)
    precision = _precision_for(onnx_file, precision, has_qdq=has_qdq)
    plan = Path(plan_path) if plan_path is not None else default_plan_path(model_name, device, cache_dir)
    if plan.exists() and plan.is_dir():
        plan = plan / plan_filename(device.compute_capability)
    if timing_cache is None:
        cc = "".join(map(str, device.compute_capability))
        timing = plan.parent / f"timing.sm{cc}.trt{device.tensorrt_version}.cache"
    else:
        timing = Path(timing_cache)
    inp = spec.inputs[0]
    return PlanRequest(
        model_name=model_name,
        onnx_path=onnx_file,
        plan_path=plan,
        precision=precision,
        profile=profile,
        workspace_bytes=workspace_bytes,
        timing_cache=timing,
        input_name=inp.name,
        input_shape=profile_shapes(inp.shape)[2],
        input_dtype=str(inp.dtype),
    )


def profile_shapes(shape: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """Min / opt / max input shapes (without batch) of the optimisation profile.

    Fixed dims stay; the detectors' variable height and width (rect letterbox, contract ``-1``)
    span ``DETECTOR_MIN_SIDE`` .. ``DETECTOR_MAX_SIDE`` with ``DETECTOR_OPT_HW`` as the opt shape.
    """
    if list(shape[:2]) != [-1, -1]:
        return tuple(shape), tuple(shape), tuple(shape)
    rest = tuple(shape[2:])
    lo = contract.DETECTOR_MIN_SIDE
    hi = contract.DETECTOR_MAX_SIDE
    return (lo, lo, *rest), (*contract.DETECTOR_OPT_HW, *rest), (hi, hi, *rest)


def _precision_for(onnx_file: Path, precision: str, *, has_qdq: bool | None) -> str:
    qdq = onnx_has_qdq(onnx_file) if has_qdq is None else has_qdq
    if qdq and precision != "int8":
        LOGGER.info("%s has Q/DQ nodes: an INT8 plan (explicit quantisation) instead of %s", onnx_file, precision)
        return "int8"
    if precision == "int8" and not qdq:
        raise ValueError(
            f"INT8 plans need a QDQ ONNX (enrichment-export onnx --precision int8); {onnx_file} has no Q/DQ "
            "nodes and TensorRT calibration is not supported here"
        )
    return precision


def _check_onnx_path(onnx_path: str | os.PathLike[str], allowed_roots: Any) -> Path:
    path = checked_path(onnx_path, allowed_roots=allowed_roots)
    if not path.is_file():
        raise ModelFileError(f"ONNX file {str(path)!r} does not exist; export it first (enrichment-export onnx)")
    if path.suffix != ".onnx":
        raise ValueError(f"expected a .onnx file, got {str(path)!r}")
    return path


@dataclass(frozen=True)
class PlanDecision:
    """Whether a plan must be (re)built, and why."""

    build: bool
    reason: str
    request: PlanRequest
    device: DeviceInfo
    onnx_sha256: str

    def describe(self) -> str:
        """One line for ``--check-only`` and logs."""
        r = self.request
        sm = "".join(map(str, self.device.compute_capability))
        trt = self.device.tensorrt_version
        what = f"{r.model_name}: {r.plan_path} ({r.precision}, {r.profile}, sm{sm}, TensorRT {trt})"
        return f"{what}: {'would build' if self.build else 'up to date'}: {self.reason}"


def plan_decision(request: PlanRequest, device: DeviceInfo, *, onnx_sha256: str | None = None) -> PlanDecision:
    """Decide whether `request` needs a build on `device`, comparing the existing sidecar.

    Args:
        request: From :func:`make_plan_request`.
        device: The current device facts.
        onnx_sha256: sha256 of the ONNX file, when already known (else computed).
    """
    sha = onnx_sha256 or sha256_file(request.onnx_path)

    def decide(build: bool, reason: str) -> PlanDecision:
        return PlanDecision(build, reason, request, device, sha)

    if not request.plan_path.is_file():
        return decide(True, "no plan yet")
    side = sidecar_path(request.plan_path)
    if not side.is_file():
        return decide(True, f"plan has no sidecar {side.name}; its provenance is unknown")
    try:
        meta = read_sidecar(side)
    except ModelFileError as err:
        return decide(True, str(err))
    stale = []
    if meta.compute_capability != device.cc:
        stale.append(f"compute capability {meta.compute_capability} -> {device.cc}")
    if meta.tensorrt_version != device.tensorrt_version:
        stale.append(f"TensorRT {meta.tensorrt_version} -> {device.tensorrt_version}")
    if meta.onnx_sha256 != sha:
        stale.append(f"ONNX sha256 {meta.onnx_sha256[:12]} -> {sha[:12]}")
    if meta.precision != request.precision:
        stale.append(f"precision {meta.precision} -> {request.precision}")
    if dict(meta.profile) != request.profile.to_dict():
        old = meta.profile
        stale.append(f"profile {old.get('min')}/{old.get('opt')}/{old.get('max')} -> {request.profile}")
    if stale:
        return decide(True, "stale: " + "; ".join(stale))
    return decide(False, "sidecar matches GPU, TensorRT, ONNX, precision and profile")


# --- environment ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class TensorRTSettings:
    """TensorRT settings of one model from the original service's environment variables."""

    model_name: str
    use_tensorrt: bool
    fp16: bool
    engine_path: Path | None
    cache_dir: Path

    @property
    def precision(self) -> str:
        """``fp16`` or ``fp32``."""
        return "fp16" if self.fp16 else "fp32"


def _env_bool(environ: Mapping[str, str], names: Sequence[str], default: bool) -> bool:
    return env_flag(names, default=default, environ=environ)  # empty = unset (core.flags)


def tensorrt_settings_from_env(model_name: str, environ: Mapping[str, str] | None = None) -> TensorRTSettings:
    """Read ``POSE_*`` / ``THREAT_*`` TensorRT variables (both threat spellings) for `model_name`.

    ``*_USE_TENSORRT`` defaults to false, ``*_TENSORRT_FP16`` to true. ``*_TENSORRT_ENGINE_PATH`` is
    the plan file to write/read (a folder means ``<folder>/model.sm<XY>.plan``); the plan cache root
    is ``$ENRICHMENT_TENSORRT_CACHE_DIR`` or ``/cache/tensorrt``. Models without variables (OSNet)
    get the defaults.

    Raises:
        ValueError: A value that is not a boolean, or the two threat spellings disagree.
    """
    env = os.environ if environ is None else environ
    if model_name not in contract.INFERENCE_MODELS:
        raise ValueError(f"model_name must be one of {list(contract.INFERENCE_MODELS)}, got {model_name!r}")
    names = ENV_VARS.get(model_name, {"use": (), "path": (), "fp16": ()})
    path_value = next((env[n] for n in names["path"] if env.get(n)), None)
    if path_value is not None and "\x00" in path_value:
        raise ValueError(f"{names['path'][0]} contains a NUL byte")
    cache = env.get(CACHE_DIR_ENV) or str(DEFAULT_CACHE_DIR)
    return TensorRTSettings(
        model_name=model_name,
        use_tensorrt=_env_bool(env, names["use"], False),
        fp16=_env_bool(env, names["fp16"], True),
        engine_path=Path(path_value) if path_value else None,
        cache_dir=Path(cache),
    )


# --- GPU side (TensorRT) ------------------------------------------------------------------------
#
# The plan path imports neither torch nor Ultralytics: device facts come from the driver
# (``nvidia-smi``), GPU buffers from polygraphy, reference outputs from onnxruntime. Every missing
# piece ends in a one-line DeviceUnavailableError that says what to do.

NVIDIA_SMI_ENV = "ENRICHMENT_NVIDIA_SMI"  # path of nvidia-smi (default: found on PATH)
_WHERE_TO_BUILD = (
    "build plans on the GPU host in the plan-builder image (docker compose --profile build run --rm build-plans), "
    "or only check with --check-only --gpu-cc 8.6 --trt-version 10.5.0"
)


class DeviceUnavailableError(RuntimeError):
    """No GPU, no NVIDIA driver, no TensorRT or no polygraphy: plans cannot be built or run here."""


def query_gpu(device_index: int = 0, *, timeout_s: float = 30.0) -> tuple[tuple[int, int], str]:
    """Compute capability and name of GPU `device_index`, from ``nvidia-smi --query-gpu``.

    Raises:
        DeviceUnavailableError: nvidia-smi is missing, the driver does not answer, or there is no such GPU.
    """
    exe = os.environ.get(NVIDIA_SMI_ENV) or shutil.which("nvidia-smi")
    if not exe:
        raise DeviceUnavailableError(f"no NVIDIA driver: nvidia-smi is not on PATH; {_WHERE_TO_BUILD}")
    cmd = [exe, "--query-gpu=compute_cap,name", "--format=csv,noheader", f"--id={device_index}"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise DeviceUnavailableError(f"nvidia-smi did not answer ({err}); check the NVIDIA driver") from err
    lines = [line.strip() for line in proc.stdout.splitlines() if line.strip()]
    if proc.returncode != 0 or not lines:
        said = (proc.stderr.strip() or proc.stdout.strip() or f"exit status {proc.returncode}").splitlines()[0]
        raise DeviceUnavailableError(f"no usable NVIDIA GPU {device_index}: nvidia-smi: {said!r}; {_WHERE_TO_BUILD}")
    cc_text, _, name = lines[0].partition(",")
    try:
        cc = parse_compute_capability(cc_text)
    except ValueError as err:
        raise DeviceUnavailableError(f"nvidia-smi gave no compute capability ({lines[0]!r}); update it") from err
    return cc, name.strip() or "unknown GPU"


def tensorrt_version() -> str:
    """The installed TensorRT version.

    Raises:
        DeviceUnavailableError: TensorRT is not installed.
    """
    try:
        import tensorrt as trt
    except ImportError as err:
        raise DeviceUnavailableError(
            "TensorRT is not installed: build plans in the plan-builder image (nvcr.io/nvidia/tensorrt of the same "
            "release as the serving Triton, deploy/Dockerfile)"
        ) from err
    return str(trt.__version__)


def detect_device_info(device_index: int = 0) -> DeviceInfo:
    """The GPU's compute capability and name (from the driver) and the installed TensorRT version.

    Raises:
        DeviceUnavailableError: No GPU, no driver or no TensorRT (one line that says what to do).
    """
    cc, name = query_gpu(device_index)
    return DeviceInfo(cc, name, tensorrt_version())


def onnx_has_qdq(onnx_path: str | os.PathLike[str]) -> bool:
    """Whether the ONNX graph holds QuantizeLinear/DequantizeLinear nodes (an explicitly quantised model)."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    return any(node.op_type in _QDQ_OPS for node in model.graph.node)


_QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})


def build_serialized_plan(request: PlanRequest) -> bytes:
    """Build a serialized TensorRT engine from the request's ONNX (TensorRT 10 API).

    ``fp16`` sets the FP16 flag; ``fp32`` also clears TF32 so that FP32 means FP32; ``int8`` is
    explicit quantisation of a QDQ ONNX: the INT8 flag (the Q/DQ scales decide what runs in INT8)
    plus FP16 for the layers left in float.

    Raises:
        DeviceUnavailableError: TensorRT is not installed.
        RuntimeError: Parsing or building failed (the parser's errors are included).
    """
    tensorrt_version()
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(request.onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {request.onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, request.workspace_bytes)
    if request.precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    if request.precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
    if request.precision == "fp32":
        config.clear_flag(trt.BuilderFlag.TF32)
    profile = builder.create_optimization_profile()
    p = request.profile
    lo, opt, hi = profile_shapes(contract.model_spec(request.model_name).inputs[0].shape)
    profile.set_shape(request.input_name, (p.min, *lo), (p.opt, *opt), (p.max, *hi))
    config.add_optimization_profile(profile)
    cache_bytes = b""
    if request.timing_cache is not None and request.timing_cache.is_file():
        cache_bytes = request.timing_cache.read_bytes()
    timing_cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(timing_cache, False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build a plan from {request.onnx_path} (see the log above)")
    if request.timing_cache is not None:
        with atomic_output(request.timing_cache, suffix=".cache") as tmp:
            tmp.write_bytes(bytes(memoryview(config.get_timing_cache().serialize())))
    return bytes(memoryview(serialized))


def run_plan(plan: bytes, inputs: np.ndarray, input_name: str) -> dict[str, np.ndarray]:
    """Run a serialized plan once on `inputs` with polygraphy's TrtRunner; returns outputs by name.

    Raises:
        DeviceUnavailableError: TensorRT or polygraphy is not installed.
    """
    tensorrt_version()
    try:
        from polygraphy.backend.trt import EngineFromBytes, TrtRunner
    except ImportError as err:
        raise DeviceUnavailableError(
            "polygraphy is not installed: pip install 'enrichment-light[plan]' (the plan-builder image has it)"
        ) from err
    with TrtRunner(EngineFromBytes(plan)) as runner:
        outputs = runner.infer(feed_dict={input_name: np.ascontiguousarray(inputs)})
    return {name: np.array(value, copy=True) for name, value in outputs.items()}  # the runner reuses its buffers


def run_onnxruntime(onnx_path: Path, inputs: np.ndarray, input_name: str) -> dict[str, np.ndarray]:
    """Reference outputs from ONNX Runtime on the CPU."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, {input_name: inputs}), strict=True))


# --- verification -------------------------------------------------------------------------------
#
# One tolerance over a whole raw output is blind: the pose head mixes 0-640 px boxes with 0-1
# scores, so a range-relative limit (~13 px) lets a +0.3 score error through. Each channel group
# is therefore compared on its own scale, on real letterboxed photos, and the decoded detections
# (after NMS) must agree as well.

SAMPLES_RESOURCE = "plan_samples.npz"
RELEVANT_SCORE = 0.05  # coordinates are compared on anchors whose reference score reaches this
NMS_CONF, NMS_IOU = 0.25, 0.7  # Ultralytics' predict defaults: more boxes than serving's 0.5, a stricter check
MAX_COUNT_DIFF, MAX_BOX_DIFF_PX, MATCH_IOU = 1, 2.0, 0.5

# Per channel group: max |diff| (boxes and keypoint x/y in letterbox pixels, scores and keypoint
# confidences in [0, 1]) or, for embeddings, the lowest cosine similarity allowed. FP16 values are
# set on paper from FP16's resolution (0.25-0.5 px at 300-640 px) and must be confirmed on a GPU.
GROUP_TOLERANCES: dict[str, dict[str, float]] = {
    "fp16": {"boxes": 2.0, "scores": 0.02, "keypoint_xy": 3.0, "keypoint_conf": 0.03, "cosine": 0.999},
    "fp32": {"boxes": 0.1, "scores": 1e-3, "keypoint_xy": 0.2, "keypoint_conf": 2e-3, "cosine": 0.99999},
    "int8": {"boxes": 8.0, "scores": 0.1, "keypoint_xy": 10.0, "keypoint_conf": 0.15, "cosine": 0.98},
}


def channel_groups(model_name: str, channels: int) -> dict[str, np.ndarray]:
    """Row indices of each channel group of a raw YOLOv8 head output ``[N, channels, anchors]``.

    Detect heads: ``boxes`` (cx, cy, w, h) and ``scores`` (one row per class). The pose head adds
    per keypoint ``x, y, conf``: ``keypoint_xy`` and ``keypoint_conf``.
    """
    rows = np.arange(channels)
    if model_name == contract.POSE_MODEL:
        if channels != contract.POSE_RAW_CHANNELS:
            raise ValueError(f"pose output has {channels} channels, expected {contract.POSE_RAW_CHANNELS}")
        kpt = rows[5:].reshape(contract.NUM_KEYPOINTS, contract.KEYPOINT_DIMS)
        return {"boxes": rows[:4], "scores": rows[4:5], "keypoint_xy": kpt[:, :2].ravel(), "keypoint_conf": kpt[:, 2]}
    if channels < 5:
        raise ValueError(f"detect output has {channels} channels, expected 4 box rows and at least one class")
    return {"boxes": rows[:4], "scores": rows[4:]}


def load_samples() -> dict[str, np.ndarray]:
    """The packaged sample inputs (``scripts/make_plan_samples.py`` writes them).

    ``images``: letterboxed photos, ``[K, 640, 640, 3]`` uint8 RGB; ``crops``: person crops,
    ``[M, 256, 128, 3]`` uint8 RGB.
    """
    from importlib import resources

    with resources.files("enrichment_export").joinpath("data", SAMPLES_RESOURCE).open("rb") as fh:
        data = np.load(fh)
        return {k: np.asarray(data[k]) for k in data.files}


def sample_batch(request: PlanRequest, batch: int, samples: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
    """A batch of real inputs for the request's model.

    The packaged photos (or crops) and their mirror images, repeated to fill `batch`.
    """
    samples = samples if samples is not None else load_samples()
    pool = samples["crops" if request.model_name == contract.REID_MODEL else "images"]
    if tuple(pool.shape[1:]) != tuple(request.input_shape):
        raise ValueError(f"sample shape {pool.shape[1:]} differs from the model input {request.input_shape}")
    pool = np.concatenate([pool, pool[:, :, ::-1]])
    return np.ascontiguousarray(pool[np.arange(batch) % len(pool)])


@dataclass(frozen=True)
class VerificationReport:
    """Comparison of a plan with ONNX Runtime, per channel group and after NMS."""

    passed: bool
    precision: str
    batch_sizes: tuple[int, ...]
    tolerances: dict[str, float]
    groups: dict[str, dict[str, float]]
    detections: dict[str, dict[str, float]] = field(default_factory=dict)
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (stored in the sidecar)."""
        d = dataclasses.asdict(self)
        d["batch_sizes"] = list(self.batch_sizes)
        return d


def compare_groups(
    model_name: str, got: np.ndarray, want: np.ndarray, tolerances: Mapping[str, float]
) -> tuple[dict[str, dict[str, float]], list[str]]:
    """Compare one raw output per channel group. Returns (stats per group, problems)."""
    got64, want64 = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    if got64.shape != want64.shape:
        return {}, [f"shape {got64.shape}, expected {want64.shape}"]
    if not np.isfinite(got64).all():
        return {}, ["non-finite values"]
    stats: dict[str, dict[str, float]] = {}
    problems: list[str] = []
    if model_name == contract.REID_MODEL:
        norm = np.linalg.norm(got64, axis=1) * np.linalg.norm(want64, axis=1)
        cosine = np.sum(got64 * want64, axis=1) / np.maximum(norm, 1e-12)
        worst = float(cosine.min()) if cosine.size else 1.0
        mean = float(cosine.mean()) if cosine.size else 1.0
        stats["cosine"] = {"min": worst, "mean": mean, "limit": tolerances["cosine"]}
        if worst < tolerances["cosine"]:
            problems.append(f"embedding cosine {worst:.5f} < {tolerances['cosine']}")
        return stats, problems
    groups = channel_groups(model_name, want64.shape[1])
    diff = np.abs(got64 - want64)
    relevant = want64[:, groups["scores"], :].max(axis=1) >= RELEVANT_SCORE  # [N, anchors]
    for name, rows in groups.items():
        d = diff[:, rows, :]  # [N, rows, anchors]
        limit = tolerances[name]
        p99 = float(np.percentile(d, 99)) if d.size else 0.0
        if name in ("scores", "keypoint_conf"):
            worst, compared = float(d.max()) if d.size else 0.0, d.shape[0] * d.shape[2]
        else:
            picked = d.transpose(0, 2, 1)[relevant]  # [relevant anchors, rows]
            worst, compared = (float(picked.max()) if picked.size else 0.0), int(relevant.sum())
        stats[name] = {"max_abs_diff": worst, "p99_abs_diff": p99, "anchors": compared, "limit": limit}
        if worst > limit or p99 > limit:
            problems.append(f"{name}: max |diff| {worst:.4g}, p99 {p99:.4g} > {limit}")
    return stats, problems


def _decoded(model_name: str, raw: np.ndarray) -> list[np.ndarray]:
    """Per image ``[k, 6]`` rows ``x1, y1, x2, y2, score, class`` after NMS, in letterbox pixels."""
    from enrichment_light.core.processing.detection import postprocess_detections, postprocess_pose
    from enrichment_light.core.processing.image import LetterboxInfo

    size = contract.DETECTOR_INPUT_SIZE
    infos = [LetterboxInfo(size, size, 1.0, 0, 0)] * raw.shape[0]
    raw32 = np.ascontiguousarray(raw, dtype=np.float32)
    if model_name == contract.POSE_MODEL:
        poses = postprocess_pose(raw32, infos, conf=NMS_CONF, iou=NMS_IOU)
        return [np.column_stack([p.xyxy, p.scores, np.zeros(len(p.scores))]) for p in poses]
    dets = postprocess_detections(raw32, infos, conf=NMS_CONF, iou=NMS_IOU)
    return [np.column_stack([d.xyxy, d.scores, d.class_ids]) for d in dets]


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    x1, y1 = np.maximum(a[:, None, 0], b[None, :, 0]), np.maximum(a[:, None, 1], b[None, :, 1])
    x2, y2 = np.minimum(a[:, None, 2], b[None, :, 2]), np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = lambda r: (r[:, 2] - r[:, 0]) * (r[:, 3] - r[:, 1])  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None, :] - inter, 1e-9)


def compare_detections(model_name: str, got: np.ndarray, want: np.ndarray) -> tuple[dict[str, float], list[str]]:
    """Decode both raw outputs with our NMS and match them per image (greedy, same class, IoU >= 0.5).

    Passes when, per image, the counts differ by at most one, at most one detection of either side is
    unmatched, and matched boxes differ by at most 2 px.
    """
    stats = {"images": 0, "reference_detections": 0, "plan_detections": 0, "max_box_diff_px": 0.0, "unmatched": 0}
    problems: list[str] = []
    for i, (g, w) in enumerate(zip(_decoded(model_name, got), _decoded(model_name, want), strict=True)):
        stats["images"] += 1
        stats["reference_detections"] += len(w)
        stats["plan_detections"] += len(g)
        free = np.ones(len(g), dtype=bool)
        worst, unmatched = 0.0, 0
        ious = _iou(w[:, :4], g[:, :4]) if len(w) and len(g) else np.zeros((len(w), len(g)))
        for r in range(len(w)):
            cand = np.flatnonzero(free & (g[:, 5] == w[r, 5]) & (ious[r] >= MATCH_IOU)) if len(g) else []
            if len(cand) == 0:
                unmatched += 1
                continue
            best = cand[np.argmax(ious[r, cand])]
            free[best] = False
            worst = max(worst, float(np.abs(g[best, :4] - w[r, :4]).max()))
        unmatched += int(free.sum())
        stats["max_box_diff_px"] = max(stats["max_box_diff_px"], worst)
        stats["unmatched"] += unmatched
        if abs(len(g) - len(w)) > MAX_COUNT_DIFF or unmatched > 2 * MAX_COUNT_DIFF or worst > MAX_BOX_DIFF_PX:
            problems.append(
                f"image {i}: {len(g)} detections vs {len(w)} from ONNX Runtime, {unmatched} unmatched, "
                f"matched boxes up to {worst:.2f} px apart (allowed: count +-{MAX_COUNT_DIFF}, {MAX_BOX_DIFF_PX} px)"
            )
    return stats, problems


Runner = Callable[[bytes, np.ndarray, str], Mapping[str, np.ndarray]]
Reference = Callable[[Path, np.ndarray, str], Mapping[str, np.ndarray]]


def verify_plan(
    plan: bytes,
    request: PlanRequest,
    *,
    runner: Runner = run_plan,
    reference: Reference = run_onnxruntime,
    tolerances: Mapping[str, float] | None = None,
    samples: Mapping[str, np.ndarray] | None = None,
) -> VerificationReport:
    """Compare a plan with ONNX Runtime on real letterboxed photos at the profile's min and max batch.

    Args:
        plan: The serialized plan.
        request: Its build request (model, ONNX, precision, profile).
        runner: Runs the plan (default: polygraphy's TrtRunner).
        reference: Runs the ONNX (default: ONNX Runtime on the CPU).
        tolerances: Per channel group (default: :data:`GROUP_TOLERANCES` of the precision).
        samples: Sample inputs (default: the packaged ``plan_samples.npz``).

    Returns:
        The report; ``passed`` is false when any group or the decoded detections disagree.
    """
    limits = dict(tolerances or GROUP_TOLERANCES[request.precision])
    batches = tuple(sorted({request.profile.min, request.profile.max}))
    samples = samples if samples is not None else load_samples()
    groups: dict[str, dict[str, float]] = {}
    detections: dict[str, dict[str, float]] = {}
    messages = []
    for b in batches:
        x = sample_batch(request, b, samples)
        got, want = runner(plan, x, request.input_name), reference(request.onnx_path, x, request.input_name)
        for name, ref in want.items():
            if name not in got:
                messages.append(f"batch {b}: output {name!r} missing")
                continue
            stats, problems = compare_groups(request.model_name, got[name], ref, limits)
            groups.update({f"{name}.{group}@batch{b}": s for group, s in stats.items()})
            messages.extend(f"batch {b}: {name}: {p}" for p in problems)
            if request.model_name != contract.REID_MODEL and not problems:
                det_stats, det_problems = compare_detections(request.model_name, got[name], ref)
                detections[f"{name}@batch{b}"] = det_stats
                messages.extend(f"batch {b}: {name}: {p}" for p in det_problems)
    return VerificationReport(not messages, request.precision, batches, limits, groups, detections, "; ".join(messages))


# --- build entry point -------------------------------------------------------------------------


@dataclass(frozen=True)
class PlanOutcome:
    """What :func:`ensure_plan` did: ``up-to-date``, ``would-build`` (check-only) or ``built``."""

    action: str
    decision: PlanDecision
    sidecar: PlanSidecar | None = None
    verification: VerificationReport | None = None

    @property
    def plan_path(self) -> Path:
        """Where the plan is (or would be)."""
        return self.decision.request.plan_path


class PlanVerificationError(ModelFileError):
    """A freshly built plan disagreed with ONNX Runtime and was not installed."""


def ensure_plan(
    request: PlanRequest,
    device: DeviceInfo,
    *,
    force: bool = False,
    check_only: bool = False,
    builder: Callable[[PlanRequest], bytes] = build_serialized_plan,
    verifier: Callable[[bytes, PlanRequest], VerificationReport] = verify_plan,
) -> PlanOutcome:
    """Build `request`'s plan when missing or stale, verify it, and install it atomically.

    Args:
        request: From :func:`make_plan_request`.
        device: Current device facts (:func:`detect_device_info`; injectable for tests).
        force: Rebuild even when the sidecar matches.
        check_only: Only decide and report; build nothing.
        builder: Returns the serialized plan (default: TensorRT).
        verifier: Compares a serialized plan with ONNX Runtime (default: :func:`verify_plan`).

    Returns:
        The :class:`PlanOutcome`.

    Raises:
        PlanVerificationError: The new plan failed verification (nothing was installed).
        RuntimeError: TensorRT could not build the plan.
    """
    decision = plan_decision(request, device)
    if force and not decision.build:
        decision = dataclasses.replace(decision, build=True, reason="forced rebuild")
    if check_only or not decision.build:
        LOGGER.debug("%s", decision.describe())
        return PlanOutcome("would-build" if decision.build else "up-to-date", decision)

    LOGGER.info("building %s because %s", request.plan_path, decision.reason)
    start = time.perf_counter()
    with timed_step(LOGGER, f"{request.model_name}: TensorRT {device.tensorrt_version} {request.precision} build"):
        plan = builder(request)
    seconds = time.perf_counter() - start
    with timed_step(LOGGER, f"{request.model_name}: verifying the plan against ONNX Runtime"):
        report = verifier(plan, request)
    if not report.passed:
        raise PlanVerificationError(
            f"{request.model_name}: the new plan disagrees with ONNX Runtime ({report.message}); "
            f"not installed, {request.plan_path} left unchanged"
        )
    sidecar = PlanSidecar(
        compute_capability=device.cc,
        gpu_name=device.gpu_name,
        tensorrt_version=device.tensorrt_version,
        precision=request.precision,
        profile=request.profile.to_dict(),
        onnx_sha256=decision.onnx_sha256,
        model_name=request.model_name,
        input_name=request.input_name,
        build_time=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        build_seconds=round(seconds, 3),
        workspace_bytes=request.workspace_bytes,
        plan_sha256=hashlib.sha256(plan).hexdigest(),
        verification=report.to_dict(),
    )
    sidecar_path(request.plan_path).unlink(missing_ok=True)  # never pair a new plan with an old sidecar
    with atomic_output(request.plan_path, suffix=".plan") as tmp:
        tmp.write_bytes(plan)
    write_sidecar(sidecar_path(request.plan_path), sidecar)
    LOGGER.info(
        "%s: plan saved as '%s' (%s) in %.1fs",
        request.model_name,
        request.plan_path,
        format_bytes(len(plan)),
        seconds,
    )
    return PlanOutcome("built", decision, sidecar, report)


# --- per-model build record ------------------------------------------------------------------------

BUILD_RECORD = "build-result.json"


def write_build_record(plan_dir: str | os.PathLike[str], model_name: str, *, status: str, reason: str) -> Path:
    """Record the last ``plan`` outcome of a model (``built``, ``up-to-date``, ``failed``) next to its plans.

    The repository builder puts a failure's reason into ``repository.json`` when it falls back.
    """
    path = Path(plan_dir) / BUILD_RECORD
    record = {
        "model_name": model_name,
        "status": status,
        "reason": reason,
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    with atomic_output(path, suffix=".json") as tmp:
        tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def read_build_record(plan_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The record written by :func:`write_build_record`, or ``None`` when absent or unreadable."""
    try:
        data = json.loads((Path(plan_dir) / BUILD_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
