"""ONNX export of the three inference models, with uint8 NHWC input and preprocessing in the graph.

- ``yolov8n_pose`` / ``yolov8n_threat``: ``images`` uint8 ``[N, H, W, 3]`` RGB -> cast, NHWC->NCHW, /255
  -> the fused Ultralytics model -> ``output0`` ``[N, 56, A]`` (pose) or ``[N, 4 + nc, A]`` (detect), with
  A = 8400 anchors at 640 x 640.
- ``osnet_x0_25``: ``crops`` uint8 ``[N, 256, 128, 3]`` RGB -> ImageNet normalisation -> OSNet -> L2
  normalisation -> ``embeddings`` ``[N, 512]``.

The batch dimension is dynamic, and so are the detectors' height and width (multiples of 32, as
Ultralytics' exporter with ``dynamic=True``): the served rect letterbox feeds each frame at its
minimal stride-32 rectangle (``dynamic_hw=False`` keeps the fixed 640 x 640 input). Every file is
checked with ``onnx.checker``, simplified with onnxslim and carries metadata (class names, kpt_shape,
input size, source sha256, exporter version).
Tensor names, dtypes and shapes come from :mod:`enrichment_light.core.contract`.
"""

from __future__ import annotations

import copy
import io
import json
import logging
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from enrichment_export.files import checked_path, sha256_file
from enrichment_export.steps import format_bytes, timed_step
from enrichment_light.core import contract
from enrichment_light.core.errors import ModelFileError
from enrichment_light.core.files import atomic_output

LOGGER = logging.getLogger(__name__)

EXPORTER_VERSION = "enrichment-export 0.1.0"
DEFAULT_OPSET = 17
MIN_OPSET, MAX_OPSET = 13, 21
BATCH_DIM = "batch"
WEIGHT_SUFFIXES = (".pt", ".pth")
_L2_EPS = 1e-12

# Ultralytics task each detector model must have, and the YAML used for --untrained.
YOLO_TASKS = {contract.POSE_MODEL: "pose", contract.THREAT_MODEL: "detect"}
UNTRAINED_YAMLS = {contract.POSE_MODEL: "yolov8n-pose.yaml", contract.THREAT_MODEL: "yolov8n.yaml"}
ONNX_MODELS = (contract.POSE_MODEL, contract.THREAT_MODEL, contract.REID_MODEL)


@dataclass(frozen=True)
class ExportResult:
    """What an export produced.

    Attributes:
        model_name: Contract model name (``yolov8n_pose``, ``yolov8n_threat`` or ``osnet_x0_25``).
        path: The ONNX file written.
        sha256: sha256 of the ONNX file (what a TensorRT plan sidecar records).
        size_bytes: Its size.
        seconds: Wall time of the export.
        metadata: The ``metadata_props`` written into the file.
    """

    model_name: str
    path: Path
    sha256: str
    size_bytes: int
    seconds: float
    metadata: dict[str, str] = field(default_factory=dict)


# --- graph wrappers -----------------------------------------------------------------------------


class YoloUint8Wrapper(nn.Module):
    """uint8 NHWC RGB -> float NCHW / 255 -> fused Ultralytics model -> raw head output."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Return the raw head output for uint8 ``[N, H, W, 3]`` images."""
        # Cast first: TensorRT only accepts uint8 at I/O and in Cast layers.
        x = images.float().permute(0, 3, 1, 2) / 255.0
        return self.model(x)


class OSNetUint8Wrapper(nn.Module):
    """uint8 NHWC RGB crops -> ImageNet-normalised NCHW -> OSNet -> L2-normalised embedding."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        mean = torch.tensor(contract.IMAGENET_MEAN, dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(contract.IMAGENET_STD, dtype=torch.float32).view(1, 3, 1, 1)
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        """Return ``[N, 512]`` unit-length embeddings for uint8 ``[N, 256, 128, 3]`` crops."""
        x = crops.float().permute(0, 3, 1, 2) / 255.0
        v = self.model((x - self.mean) / self.std)
        return v / v.norm(p=2, dim=1, keepdim=True).clamp_min(_L2_EPS)


# --- loading ------------------------------------------------------------------------------------


def _check_opset(opset: int) -> None:
    if not isinstance(opset, int) or not MIN_OPSET <= opset <= MAX_OPSET:
        raise ValueError(f"opset must be an int in [{MIN_OPSET}, {MAX_OPSET}], got {opset!r}")


def _check_output(output: str | os.PathLike[str]) -> Path:
    out = Path(output)
    if out.suffix != ".onnx":
        raise ValueError(f"output must be a .onnx file path, got {str(out)!r}")
    if out.exists() and out.is_dir():
        raise ValueError(f"output {str(out)!r} is a directory; give a file path such as {str(out / 'model.onnx')!r}")
    return out


def _check_weights_path(source: str | os.PathLike[str], allowed_roots: Any = None) -> Path:
    path = checked_path(source, allowed_roots=allowed_roots)
    if not path.is_file():
        raise ModelFileError(f"weights file {str(path)!r} does not exist or is not a file")
    if not is_checkpoint_name(path):
        raise ModelFileError(
            f"weights file {str(path)!r} must be a .pt, .pth or torchreid .pth.tar (model.pth.tar-60) checkpoint"
        )
    return path


_TORCHREID_CHECKPOINT = re.compile(r".+\.pth\.tar(-\d+)?", re.IGNORECASE)


def is_checkpoint_name(path: str | os.PathLike[str]) -> bool:
    """Whether a file name is a checkpoint name.

    Accepted: ``.pt``, ``.pth``, and torchreid's ``.pth.tar`` and ``model.pth.tar-60`` (the epoch
    suffix that torchreid's ``save_checkpoint`` adds).
    """
    name = Path(path).name
    return Path(name).suffix.lower() in WEIGHT_SUFFIXES or bool(_TORCHREID_CHECKPOINT.fullmatch(name))


def load_yolo_checkpoint(path: str | os.PathLike[str], *, allowed_roots: Any = None) -> nn.Module:
    """Load an Ultralytics detect/pose checkpoint (``.pt``) as an FP32 eval-mode model.

    Ultralytics checkpoints pickle the model object, so this needs a full unpickle: only load
    files you trust.

    Raises:
        ModelFileError: The file is missing, truncated, or not an Ultralytics checkpoint.
    """
    from ultralytics.nn.tasks import load_checkpoint

    p = _check_weights_path(path, allowed_roots)
    try:
        model, _ = load_checkpoint(str(p), device="cpu", fuse=False)
    except Exception as err:  # torch/zip/pickle/TypeError: all mean "unusable file"
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ModelFileError(
            f"{str(p)!r} is not a loadable Ultralytics checkpoint (truncated, corrupt, or another format): {first}"
        ) from err
    return model


def untrained_yolo(model_name: str, *, seed: int = 0, names: Mapping[int, str] | None = None) -> nn.Module:
    """Random-init YOLOv8n model for `model_name`, built from the Ultralytics YAML (no download).

    Args:
        model_name: ``yolov8n_pose`` or ``yolov8n_threat``.
        seed: Seed for the random initialisation.
        names: Class names; default ``{0: "person"}`` for pose and the 80 COCO names for threat.
            ``len(names)`` sets the number of classes of the detect head.
    """
    from ultralytics.nn.tasks import DetectionModel, PoseModel

    if model_name not in YOLO_TASKS:
        raise ValueError(f"model_name must be one of {sorted(YOLO_TASKS)}, got {model_name!r}")
    if names is None:
        names = {0: "person"} if model_name == contract.POSE_MODEL else _coco_names()
    names = {int(k): str(v) for k, v in names.items()}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        cls = PoseModel if model_name == contract.POSE_MODEL else DetectionModel
        model = cls(UNTRAINED_YAMLS[model_name], nc=len(names), verbose=False)
    model.names = names
    return model.eval()


def _coco_names() -> dict[int, str]:
    import yaml
    from ultralytics.utils import ROOT

    with open(ROOT / "cfg" / "datasets" / "coco.yaml", encoding="utf-8") as fh:
        return {int(k): str(v) for k, v in yaml.safe_load(fh)["names"].items()}


def _yolo_info(model: nn.Module) -> tuple[str, dict[int, str], list[int] | None, int]:
    task = getattr(model, "task", None)
    if task is None:
        from ultralytics.nn.tasks import guess_model_task

        task = guess_model_task(model)
    names = getattr(model, "names", None) or {}
    if isinstance(names, (list, tuple)):
        names = dict(enumerate(names))
    head = model.model[-1]
    kpt = getattr(head, "kpt_shape", None)
    return str(task), {int(k): str(v) for k, v in names.items()}, (list(kpt) if kpt else None), int(head.nc)


def _as_yolo_module(source: Any) -> nn.Module:
    inner = getattr(source, "model", None)
    if not hasattr(source, "yaml") and isinstance(inner, nn.Module) and hasattr(inner, "yaml"):
        source = inner  # an ultralytics.YOLO wrapper
    if not isinstance(source, nn.Module) or not hasattr(source, "model"):
        raise TypeError(f"expected an Ultralytics DetectionModel/PoseModel or a YOLO object, got {type(source)}")
    return source


def _prepare_yolo(model: nn.Module, *, dynamic_hw: bool = True) -> nn.Module:
    """Eval + fuse + export mode on a copy, as Ultralytics' exporter does for ONNX."""
    from ultralytics.nn.modules import C2f, Detect

    model = copy.deepcopy(model).float().eval()
    for p in model.parameters():
        p.requires_grad_(False)
    model = model.fuse(verbose=False)
    for m in model.modules():
        if isinstance(m, Detect):
            m.dynamic = dynamic_hw  # anchors traced from the input size instead of baked in
            m.export = True
            m.format = "onnx"
            m.shape = None
        elif isinstance(m, C2f):
            m.forward = m.forward_split
    return model


# --- export core --------------------------------------------------------------------------------


def _torch_to_onnx(
    module: nn.Module, example: torch.Tensor, in_name: str, out_name: str, opset: int, *, dynamic_hw: bool = False
) -> Any:
    import onnx

    axes_in: dict[int, str] = {0: BATCH_DIM}
    axes_out: dict[int, str] = {0: BATCH_DIM}
    if dynamic_hw:
        axes_in.update({1: "height", 2: "width"})
        axes_out[2] = "anchors"

    buf = io.BytesIO()
    torch.onnx.export(
        module,
        (example,),
        buf,
        input_names=[in_name],
        output_names=[out_name],
        opset_version=opset,
        dynamic_axes={in_name: axes_in, out_name: axes_out},
        do_constant_folding=True,
        dynamo=False,
    )
    return onnx.load_from_string(buf.getvalue())


def check_onnx_contract(model_proto: Any, model_name: str) -> None:
    """Check an ONNX model's single input and output against the tensor contract.

    Args:
        model_proto: An ``onnx.ModelProto``.
        model_name: The contract model name.

    Raises:
        ModelFileError: A name, dtype or non-batch dimension differs from the contract.
    """
    from onnx import helper

    spec = contract.model_spec(model_name)
    graph = model_proto.graph
    for kind, tensors, specs in (("input", graph.input, spec.inputs), ("output", graph.output, spec.outputs)):
        got = [t.name for t in tensors]
        want = [s.name for s in specs]
        if got != want:
            raise ModelFileError(f"{model_name}: ONNX {kind}s are {got}, the contract says {want}")
        for t, s in zip(tensors, specs, strict=True):
            ttype = t.type.tensor_type
            dtype = helper.tensor_dtype_to_np_dtype(ttype.elem_type)
            if dtype != s.dtype:
                raise ModelFileError(f"{model_name}: {kind} {t.name!r} has dtype {dtype}, the contract says {s.dtype}")
            dims = [d.dim_value if d.HasField("dim_value") else -1 for d in ttype.shape.dim]
            if len(dims) != len(s.shape) + 1 or dims[0] != -1:
                raise ModelFileError(
                    f"{model_name}: {kind} {t.name!r} has shape {dims}, expected [batch, *{list(s.shape)}]"
                )
            for got_d, want_d in zip(dims[1:], s.shape, strict=True):
                if want_d not in (-1, got_d):
                    raise ModelFileError(
                        f"{model_name}: {kind} {t.name!r} has shape {dims}, expected [batch, *{list(s.shape)}]"
                    )


def _finish(model_proto: Any, *, model_name: str, out: Path, metadata: dict[str, str], simplify: bool) -> Any:
    import onnx

    if simplify:
        import onnxslim

        with timed_step(LOGGER, f"{model_name}: simplifying with onnxslim {onnxslim.__version__}"):
            model_proto = onnxslim.slim(model_proto)
    del model_proto.metadata_props[:]
    onnx.helper.set_model_props(model_proto, metadata)
    model_proto.producer_name = "enrichment-export"
    model_proto.doc_string = f"{model_name} exported by {EXPORTER_VERSION}"
    onnx.checker.check_model(model_proto, full_check=True)
    check_onnx_contract(model_proto, model_name)
    with atomic_output(out, suffix=".onnx") as tmp:
        onnx.save(model_proto, str(tmp))
    return model_proto


def _base_metadata(model_name: str, task: str, source: str, source_sha256: str | None, opset: int) -> dict[str, str]:
    return {
        "model_name": model_name,
        "task": task,
        "source": source,
        "source_sha256": source_sha256 or "untrained",
        "exporter": EXPORTER_VERSION,
        "torch_version": torch.__version__,
        "opset": str(opset),
        "batch": "dynamic",
    }


def export_yolo_onnx(
    source: str | os.PathLike[str] | nn.Module,
    output: str | os.PathLike[str],
    *,
    model_name: str = contract.POSE_MODEL,
    opset: int = DEFAULT_OPSET,
    simplify: bool = True,
    allowed_roots: Any = None,
    dynamic_hw: bool = True,
) -> ExportResult:
    """Export an Ultralytics YOLOv8 pose or detect model to ONNX with uint8 NHWC input.

    Args:
        source: A checkpoint path (``.pt``) or an Ultralytics model object (``DetectionModel``,
            ``PoseModel`` or ``YOLO``); models are copied, never modified.
        output: The ``.onnx`` file to write (atomically; parent folders are created).
        model_name: ``yolov8n_pose`` (needs a pose model with kpt_shape [17, 3]) or
            ``yolov8n_threat`` (needs a detect model, any number of classes).
        opset: ONNX opset.
        simplify: Run onnxslim.
        allowed_roots: Roots a checkpoint path must lie in (``validate_model_path``; default
            ``$ENRICHMENT_MODEL_ROOTS`` or the current directory plus the standard model roots).
        dynamic_hw: Dynamic height and width (multiples of 32) besides the batch, for the rect
            letterbox; ``False`` fixes the input at 640 x 640 (the repository then serves square).

    Returns:
        The :class:`ExportResult`.

    Raises:
        ValueError: Bad arguments (checked before any heavy work), including an unsafe path.
        ModelFileError: Unreadable checkpoint, or a model of the wrong task or keypoint layout.
    """
    if model_name not in YOLO_TASKS:
        raise ValueError(f"model_name must be one of {sorted(YOLO_TASKS)}, got {model_name!r}")
    _check_opset(opset)
    out = _check_output(output)
    start = time.perf_counter()
    if isinstance(source, (str, os.PathLike)):
        path = _check_weights_path(source, allowed_roots)
        with timed_step(LOGGER, f"{model_name}: loading {path}"):
            model = load_yolo_checkpoint(path, allowed_roots=allowed_roots)
        src, src_sha = str(path), sha256_file(path)
    else:
        model = _as_yolo_module(source)
        pt_path = getattr(model, "pt_path", None)
        src = str(pt_path) if pt_path else "in-memory model"
        src_sha = sha256_file(pt_path) if pt_path and Path(pt_path).is_file() else None

    task, names, kpt_shape, nc = _yolo_info(model)
    want_task = YOLO_TASKS[model_name]
    if task != want_task:
        raise ModelFileError(f"{model_name} needs an Ultralytics {want_task!r} model, but {src} is a {task!r} model")
    if model_name == contract.POSE_MODEL and kpt_shape != [contract.NUM_KEYPOINTS, contract.KEYPOINT_DIMS]:
        raise ModelFileError(
            f"{model_name} needs kpt_shape [{contract.NUM_KEYPOINTS}, {contract.KEYPOINT_DIMS}] "
            f"(the COCO keypoints), got {kpt_shape}"
        )
    if len(names) != nc:
        names = {i: names.get(i, str(i)) for i in range(nc)}

    import ultralytics

    fused = _prepare_yolo(model, dynamic_hw=bool(dynamic_hw))
    wrapper = YoloUint8Wrapper(fused).eval()
    spec = contract.model_spec(model_name)
    size = contract.DETECTOR_INPUT_SIZE
    example = torch.zeros((1, size, size, 3), dtype=torch.uint8)
    with torch.no_grad():
        wrapper(example)  # warm-up builds anchors, as Ultralytics' exporter does
    with timed_step(LOGGER, f"{model_name}: exporting to ONNX (torch {torch.__version__}, opset {opset})"):
        proto = _torch_to_onnx(
            wrapper, example, spec.inputs[0].name, spec.outputs[0].name, opset, dynamic_hw=bool(dynamic_hw)
        )

    metadata = _base_metadata(model_name, task, src, src_sha, opset)
    metadata["input_hw"] = "dynamic" if dynamic_hw else "static"
    metadata.update(
        {
            "names": json.dumps({str(k): v for k, v in sorted(names.items())}),
            "nc": str(nc),
            "imgsz": json.dumps([size, size]),
            "stride": str(int(max(model.stride.tolist()))),
            "input_format": "uint8 NHWC RGB, letterboxed; /255 inside the graph",
            "ultralytics_version": ultralytics.__version__,
        }
    )
    if kpt_shape:
        metadata["kpt_shape"] = json.dumps(kpt_shape)
    _finish(proto, model_name=model_name, out=out, metadata=metadata, simplify=simplify)
    return _result(model_name, out, start, metadata)


def export_osnet_onnx(
    source: str | os.PathLike[str] | nn.Module,
    output: str | os.PathLike[str],
    *,
    opset: int = DEFAULT_OPSET,
    simplify: bool = True,
    allowed_roots: Any = None,
) -> ExportResult:
    """Export OSNet-x0.25 to ONNX: uint8 NHWC crops in, L2-normalised 512-d embeddings out.

    Args:
        source: A torchreid/BoxMOT checkpoint (loaded strictly, see
            :func:`enrichment_export.osnet.load_osnet_x0_25`) or an :class:`~enrichment_export.osnet.OSNet`.
        output: The ``.onnx`` file to write.
        opset: ONNX opset.
        simplify: Run onnxslim.
        allowed_roots: Roots a checkpoint path must lie in (``validate_model_path``).

    Returns:
        The :class:`ExportResult`.

    Raises:
        ValueError: Bad arguments, including an unsafe path.
        ModelFileError: The checkpoint does not load strictly.
    """
    from enrichment_export.osnet import OSNet, load_osnet_x0_25

    _check_opset(opset)
    out = _check_output(output)
    start = time.perf_counter()
    model_name = contract.REID_MODEL
    if isinstance(source, (str, os.PathLike)):
        path = _check_weights_path(source, allowed_roots)
        model = load_osnet_x0_25(path)
        src, src_sha = str(path), sha256_file(path)
    elif isinstance(source, OSNet):
        model, src, src_sha = copy.deepcopy(source), "in-memory model", None
    else:
        raise TypeError(f"expected a checkpoint path or an OSNet module, got {type(source)}")

    wrapper = OSNetUint8Wrapper(model.eval()).eval()
    spec = contract.model_spec(model_name)
    example = torch.zeros((2, contract.REID_INPUT_HEIGHT, contract.REID_INPUT_WIDTH, 3), dtype=torch.uint8)
    with timed_step(LOGGER, f"{model_name}: exporting to ONNX (torch {torch.__version__}, opset {opset})"):
        proto = _torch_to_onnx(wrapper, example, spec.inputs[0].name, spec.outputs[0].name, opset)
    metadata = _base_metadata(model_name, "reid", src, src_sha, opset)
    metadata.update(
        {
            "architecture": "osnet_x0_25",
            "imgsz": json.dumps([contract.REID_INPUT_HEIGHT, contract.REID_INPUT_WIDTH]),
            "embedding_dim": str(contract.EMBEDDING_DIMENSION),
            "input_format": "uint8 NHWC RGB crops; ImageNet mean/std inside the graph",
            "mean": json.dumps(list(contract.IMAGENET_MEAN)),
            "std": json.dumps(list(contract.IMAGENET_STD)),
            "l2_normalized": "true",
        }
    )
    _finish(proto, model_name=model_name, out=out, metadata=metadata, simplify=simplify)
    return _result(model_name, out, start, metadata)


def export_onnx(
    model_name: str,
    source: str | os.PathLike[str] | nn.Module,
    output: str | os.PathLike[str],
    **kwargs: Any,
) -> ExportResult:
    """Dispatch to :func:`export_yolo_onnx` or :func:`export_osnet_onnx` by contract model name."""
    if model_name == contract.REID_MODEL:
        return export_osnet_onnx(source, output, **kwargs)
    if model_name in YOLO_TASKS:
        return export_yolo_onnx(source, output, model_name=model_name, **kwargs)
    raise ValueError(f"model_name must be one of {list(ONNX_MODELS)}, got {model_name!r}")


def untrained_model(model_name: str, *, seed: int = 0) -> nn.Module:
    """A random-init model for `model_name` (offline smoke tests and ``--untrained``)."""
    if model_name == contract.REID_MODEL:
        from enrichment_export.osnet import create_osnet_x0_25

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return create_osnet_x0_25()
    return untrained_yolo(model_name, seed=seed)


def read_onnx_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """Return the ``metadata_props`` of an ONNX file as a dict (weights are not loaded)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}


def _result(model_name: str, out: Path, start: float, metadata: dict[str, str]) -> ExportResult:
    seconds = time.perf_counter() - start
    size = out.stat().st_size
    LOGGER.info("%s: export success in %.1fs, saved as '%s' (%s)", model_name, seconds, out, format_bytes(size))
    return ExportResult(model_name, out, sha256_file(out), size, seconds, dict(metadata))
