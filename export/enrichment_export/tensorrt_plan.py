"""TensorRT plans from the exported ONNX files: naming, staleness, sidecars, build and verification.

A plan only runs on the GPU architecture and TensorRT release it was built with, so plans are named
by compute capability (``model.sm86.plan``) and carry a sidecar JSON (``model.sm86.plan.json``) that
records the compute capability, GPU name, TensorRT version, precision, batch profile and the sha256
of the source ONNX. A plan whose sidecar matches the current GPU, TensorRT, ONNX, precision and
profile is reused; otherwise it is rebuilt (the original never rebuilt a stale engine).

A new plan is built into a temporary file, verified against ONNX Runtime on a sample batch, and only
then moved into place with ``os.replace``, so a plan that fails verification is never installed.

Only :func:`build_serialized_plan`, :func:`run_plan` and :func:`detect_device_info` need TensorRT and
a GPU; everything else is plain Python and takes the device facts, the builder and the verifier as
arguments, so it is tested without a GPU.

FP16 verification tolerance: every output must satisfy ``max|trt - ort| <= atol + rtol * max|ort|``
with ``atol=1e-2, rtol=2e-2`` (FP16; 2 % of the output's range: about 13 px on 640-px box coordinates,
0.02 on scores and unit embeddings) or ``atol=1e-3, rtol=1e-3`` (FP32).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
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
PRECISIONS = ("fp16", "fp32")
DEFAULT_WORKSPACE_BYTES = 1 << 30
SIDECAR_VERSION = 1
TOLERANCES = {"fp16": (1e-2, 2e-2), "fp32": (1e-3, 1e-3)}  # (atol, rtol) on raw outputs

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
) -> PlanRequest:
    """Check the arguments of a plan build and resolve its paths (cheap: no TensorRT needed).

    Args:
        model_name: An inference model of the contract.
        onnx_path: The exported ONNX file.
        device: The target device (see :func:`detect_device_info`).
        plan_path: Explicit plan file (e.g. from ``POSE_TENSORRT_ENGINE_PATH``); default
            :func:`default_plan_path` under `cache_dir`.
        cache_dir: Plan cache root (default ``/cache/tensorrt``).
        precision: ``fp16`` or ``fp32``.
        profile: Batch profile; its max must not exceed the model's ``max_batch_size``.
        workspace_bytes: Builder workspace memory pool limit.
        timing_cache: Timing cache file; default ``<plan dir>/timing.sm<XY>.trt<version>.cache``.
        allowed_roots: Roots the ONNX path must lie in (``validate_model_path``).

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


def detect_device_info(device_index: int = 0) -> DeviceInfo:
    """Query the current GPU (via torch) and the installed TensorRT.

    Raises:
        RuntimeError: No CUDA device, or TensorRT is not installed.
    """
    import torch

    if not torch.cuda.is_available():
        raise RuntimeError("no CUDA device: TensorRT plans can only be built on a GPU (use --check-only with --gpu-cc)")
    try:
        import tensorrt as trt
    except ImportError as err:
        raise RuntimeError(
            "TensorRT is not installed; build plans inside the NGC TensorRT/Triton container of the same release "
            "as the serving Triton"
        ) from err
    major, minor = torch.cuda.get_device_capability(device_index)
    return DeviceInfo((int(major), int(minor)), torch.cuda.get_device_name(device_index), str(trt.__version__))


def build_serialized_plan(request: PlanRequest) -> bytes:
    """Build a serialized TensorRT engine from the request's ONNX (TensorRT 10 API).

    Raises:
        RuntimeError: Parsing or building failed (the parser's errors are included).
    """
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
    if request.precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
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
    """Run a serialized plan once on `inputs` (torch CUDA tensors as buffers); returns outputs by name."""
    import tensorrt as trt
    import torch

    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    engine = runtime.deserialize_cuda_engine(plan)
    if engine is None:
        raise RuntimeError("TensorRT could not deserialize the plan")
    context = engine.create_execution_context()
    context.set_input_shape(input_name, tuple(inputs.shape))
    buffers: dict[str, torch.Tensor] = {}
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
            tensor = torch.from_numpy(np.ascontiguousarray(inputs)).cuda()
        else:
            dtype = torch.from_numpy(np.empty(0, dtype=trt.nptype(engine.get_tensor_dtype(name)))).dtype
            tensor = torch.empty(tuple(context.get_tensor_shape(name)), dtype=dtype, device="cuda")
        buffers[name] = tensor
        context.set_tensor_address(name, tensor.data_ptr())
    stream = torch.cuda.Stream()
    if not context.execute_async_v3(stream.cuda_stream):
        raise RuntimeError("TensorRT execution failed")
    stream.synchronize()
    return {n: t.cpu().numpy() for n, t in buffers.items() if n != input_name}


def run_onnxruntime(onnx_path: Path, inputs: np.ndarray, input_name: str) -> dict[str, np.ndarray]:
    """Reference outputs from ONNX Runtime on the CPU."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, {input_name: inputs}), strict=True))


# --- verification -------------------------------------------------------------------------------


@dataclass(frozen=True)
class VerificationReport:
    """Per-output comparison of a plan against ONNX Runtime."""

    passed: bool
    precision: str
    batch_sizes: tuple[int, ...]
    atol: float
    rtol: float
    outputs: dict[str, dict[str, float]]
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (stored in the sidecar)."""
        d = dataclasses.asdict(self)
        d["batch_sizes"] = list(self.batch_sizes)
        return d


def compare_outputs(
    got: Mapping[str, np.ndarray], want: Mapping[str, np.ndarray], *, atol: float, rtol: float
) -> tuple[bool, dict[str, dict[str, float]], str]:
    """Check ``max|got - want| <= atol + rtol * max|want|`` per output. Returns (passed, stats, message)."""
    stats: dict[str, dict[str, float]] = {}
    problems = []
    for name, ref in want.items():
        if name not in got:
            problems.append(f"output {name!r} missing")
            continue
        out = np.asarray(got[name], dtype=np.float64)
        ref64 = np.asarray(ref, dtype=np.float64)
        if out.shape != ref64.shape:
            problems.append(f"output {name!r} has shape {out.shape}, expected {ref64.shape}")
            continue
        diff = float(np.max(np.abs(out - ref64))) if out.size else 0.0
        scale = float(np.max(np.abs(ref64))) if ref64.size else 0.0
        limit = atol + rtol * scale
        stats[name] = {"max_abs_diff": diff, "max_abs_ref": scale, "limit": limit}
        if not np.isfinite(out).all():
            problems.append(f"output {name!r} has non-finite values")
        elif diff > limit:
            problems.append(f"output {name!r}: max |diff| {diff:.4g} > {limit:.4g}")
    return not problems, stats, "; ".join(problems)


def sample_batch(request: PlanRequest, batch: int, seed: int = 0) -> np.ndarray:
    """A deterministic uint8 batch of the request's input shape."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (batch, *request.input_shape), dtype=np.uint8)


Runner = Callable[[bytes, np.ndarray, str], Mapping[str, np.ndarray]]
Reference = Callable[[Path, np.ndarray, str], Mapping[str, np.ndarray]]


def verify_plan(
    plan: bytes,
    request: PlanRequest,
    *,
    runner: Runner = run_plan,
    reference: Reference = run_onnxruntime,
    tolerance: tuple[float, float] | None = None,
) -> VerificationReport:
    """Compare a plan with ONNX Runtime on sample batches at the profile's min and max batch sizes."""
    atol, rtol = tolerance or TOLERANCES[request.precision]
    batches = tuple(sorted({request.profile.min, request.profile.max}))
    all_stats: dict[str, dict[str, float]] = {}
    messages = []
    for b in batches:
        x = sample_batch(request, b, seed=b)
        ok, stats, msg = compare_outputs(
            runner(plan, x, request.input_name),
            reference(request.onnx_path, x, request.input_name),
            atol=atol,
            rtol=rtol,
        )
        for name, s in stats.items():
            all_stats[f"{name}@batch{b}"] = s
        if not ok:
            messages.append(f"batch {b}: {msg}")
    return VerificationReport(not messages, request.precision, batches, atol, rtol, all_stats, "; ".join(messages))


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
