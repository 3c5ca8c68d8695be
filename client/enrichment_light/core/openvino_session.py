"""An ONNX model compiled by OpenVINO for the CPU, called like an onnxruntime session.

The cpu target serves OSNet this way with ``precision="bf16"`` (``build-repository
--reid-precision bf16``): on a CPU with native bfloat16 (AVX512_BF16 or AMX) OpenVINO runs the same
FP32 ONNX with bf16 arithmetic, ~1.4x faster than onnxruntime FP32 on the 2-core EPYC
(docs/cpu-performance.md). onnxruntime has no bf16 convolutions on x86, so the runtime changes
with the precision. The runner and the accuracy gate both use this class, so both run the same
compiled model.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any

from enrichment_light.core.errors import ModelFileError, RuntimeMissingError

#: Precisions OpenVINO runs the FP32 ONNX at -> its ``INFERENCE_PRECISION_HINT``.
OPENVINO_PRECISIONS = {"bf16": "bf16", "fp32": "f32"}
INSTALL_HINT = "install it with: pip install 'enrichment-light[openvino]'"
#: Precisions the cpu target serves OSNet at: onnxruntime FP32, or bf16 through this module.
REID_PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True)
class TensorInfo:
    """Name and shape of a model input or output (symbolic dimensions are strings), as onnxruntime's."""

    name: str
    shape: tuple[int | str, ...]


def _openvino() -> Any:
    try:
        import openvino
    except ImportError as err:
        raise RuntimeMissingError(f"OpenVINO is not installed ({err}); {INSTALL_HINT}") from None
    return openvino


def cpu_has_native_bf16() -> bool:
    """Whether OpenVINO runs bf16 natively on this CPU (else it would silently run FP32).

    Raises:
        RuntimeMissingError: OpenVINO is not installed.
    """
    return _native_bf16(_openvino().Core())


def _native_bf16(core: Any) -> bool:
    return "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")


class OpenVinoSession:
    """`onnx_path` compiled for the CPU; :meth:`run` takes and returns what ``InferenceSession.run`` does.

    Each calling thread gets its own infer request, so up to `streams` calls run in parallel
    (the runner's concurrent runs), each on `threads_per_stream` threads.

    Args:
        onnx_path: The FP32 ONNX file.
        precision: ``bf16`` (needs native bf16, else :class:`RuntimeMissingError`) or ``fp32``.
        threads_per_stream: Threads of one call (0: OpenVINO's default).
        streams: Calls that may run at once.

    Raises:
        RuntimeMissingError: OpenVINO is missing, or bf16 was asked on a CPU without it.
        ModelFileError: OpenVINO cannot read or compile the file.
    """

    def __init__(self, onnx_path: str | os.PathLike[str], *, precision: str = "bf16", threads_per_stream: int = 1,
                 streams: int = 1) -> None:  # fmt: skip
        if precision not in OPENVINO_PRECISIONS:
            raise ValueError(f"precision must be one of {list(OPENVINO_PRECISIONS)}, got {precision!r}")
        if threads_per_stream < 0 or streams < 1:
            raise ValueError(f"threads_per_stream must be >= 0 and streams >= 1, got {threads_per_stream}, {streams}")
        ov = _openvino()
        core = ov.Core()
        if precision == "bf16" and not _native_bf16(core):
            raise RuntimeMissingError(
                "this CPU has no native bfloat16 (AVX512_BF16 or AMX): bf16 would run as FP32, no faster; "
                "serve OSNet in FP32 (build-repository --reid-precision fp32)"
            )
        config: dict[str, Any] = {
            "INFERENCE_PRECISION_HINT": OPENVINO_PRECISIONS[precision],
            "NUM_STREAMS": int(streams),
            # Triton runs several instances (processes) on the same cores: no pinning to cores.
            "ENABLE_CPU_PINNING": False,
        }
        if threads_per_stream:
            config["INFERENCE_NUM_THREADS"] = int(threads_per_stream) * int(streams)
        try:
            self.compiled = core.compile_model(core.read_model(os.fspath(onnx_path)), "CPU", config)
        except Exception as err:  # OpenVINO raises RuntimeError subclasses with long native traces
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ModelFileError(f"OpenVINO cannot load {os.fspath(onnx_path)!r}: {first}") from None
        self.precision = precision
        self._local = threading.local()

    @staticmethod
    def _info(port: Any) -> TensorInfo:
        shape = tuple(d.get_length() if d.is_static else "?" for d in port.get_partial_shape())
        return TensorInfo(port.get_any_name(), shape)

    def get_inputs(self) -> list[TensorInfo]:
        """The model inputs, as ``InferenceSession.get_inputs``."""
        return [self._info(p) for p in self.compiled.inputs]

    def get_outputs(self) -> list[TensorInfo]:
        """The model outputs, as ``InferenceSession.get_outputs``."""
        return [self._info(p) for p in self.compiled.outputs]

    def run(self, output_names: list[str] | None, feeds: dict[str, Any]) -> list[Any]:
        """Run one inference; returns the named outputs (all when `output_names` is None), copied."""
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        results = request.infer(feeds)  # share_outputs=False: the arrays are copies
        names = output_names or [o.name for o in self.get_outputs()]
        by_name = {port.get_any_name(): value for port, value in results.items()}
        return [by_name[name] for name in names]
