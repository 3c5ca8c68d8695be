"""onnxruntime behind a Python-backend model (the ``cpu`` target): same ONNX, same tensor names.

The PyPI Triton has only the Python backend, so the ``cpu`` repository serves each inference
model through :class:`OnnxRuntimeRunner`. Requests of one ``execute`` call run as one
concatenated ``session.run`` per shape, or (``concurrent_runs > 1``) as concurrent runs, one per
request, with a lone large batch split by rows so that every run has work; outputs come back in order.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from enrichment_light.core import contract as ct
from enrichment_light.core.errors import InvalidInputError
from enrichment_light.core.openvino_session import OpenVinoSession
from enrichment_light.core.params import get_bool, get_int
from enrichment_light.serving.pipeline import check_detector_images, check_tensor

#: How a cpu-target inference model runs its ONNX file (config parameter ``runtime``).
RUNTIMES = ("onnxruntime", "openvino")


class OnnxRuntimeRunner:
    """One onnxruntime session for contract model `model_name`.

    Args:
        model_name: An inference model of the contract (fixes input/output names and shapes).
        onnx_path: The ONNX file.
        intra_op_threads: onnxruntime intra-op threads (0: its default, one per core).
        inter_op_threads: onnxruntime inter-op threads.
        allow_spinning: Let idle pool threads busy-wait (onnxruntime's default).
        enable_cpu_mem_arena: Keep onnxruntime's CPU memory arena, which holds the peak
            allocation of every batch size seen (onnxruntime's default).
        concurrent_runs: Requests of one ``execute`` run as up to this many concurrent
            ``session.run`` calls (threads; onnxruntime releases the GIL) instead of one
            concatenated batch. On 2 cores, concurrent runs of one session fill the gaps of
            onnxruntime's intra-op parallelism, as bare onnxruntime called from several threads does;
            one batched run does not (docs/cpu-performance.md). 1: one batch per shape.
        split_batches: With ``concurrent_runs > 1``, when one ``execute`` holds fewer requests
            than runs, split the rows of the largest batches so that every run has work (a lone
            32-crop request -> two concurrent 16-row runs); outputs are reassembled in order.
            With single-threaded sessions this is what lets a lone request use both cores.
        runtime: ``onnxruntime``, or ``openvino`` (the same ONNX compiled by OpenVINO,
            :class:`~enrichment_light.core.openvino_session.OpenVinoSession`, one stream per
            concurrent run, `intra_op_threads` each).
        precision: With ``openvino``: ``bf16`` or ``fp32`` (OpenVINO's ``INFERENCE_PRECISION_HINT``).
    """

    def __init__(self, model_name: str, onnx_path: str | os.PathLike[str], *, intra_op_threads: int = 0,
                 inter_op_threads: int = 1, allow_spinning: bool = True,
                 enable_cpu_mem_arena: bool = True, concurrent_runs: int = 1, split_batches: bool = True,
                 runtime: str = "onnxruntime", precision: str = "fp32") -> None:  # fmt: skip
        if int(concurrent_runs) < 1:
            raise ValueError(f"concurrent_runs must be >= 1, got {concurrent_runs!r}")
        if runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {RUNTIMES}, got {runtime!r}")
        self._pool = ThreadPoolExecutor(int(concurrent_runs), "ort-run") if int(concurrent_runs) > 1 else None
        self.concurrent_runs = int(concurrent_runs)
        self.split_batches = bool(split_batches)
        self.spec = ct.model_spec(model_name)
        if self.spec.kind != "inference":
            raise ValueError(f"{model_name!r} is not an inference model")
        self.runtime = runtime
        if runtime == "openvino":
            self.session: Any = OpenVinoSession(
                onnx_path, precision=precision, threads_per_stream=int(intra_op_threads), streams=self.concurrent_runs
            )
        else:
            self.session = self._onnxruntime_session(
                onnx_path, intra_op_threads, inter_op_threads, allow_spinning, enable_cpu_mem_arena
            )
        self.input = self.spec.inputs[0]
        self.output = self.spec.outputs[0]
        # Detectors: a fixed-size ONNX (older exports) accepts only its own H x W; a dynamic one
        # any stride-32 rectangle in the contract's range (pipeline.check_detector_images).
        dims = self.session.get_inputs()[0].shape
        self.static_hw = tuple(dims[1:3]) if all(isinstance(d, int) for d in dims[1:3]) else None
        self.is_detector = model_name in (ct.POSE_MODEL, ct.THREAT_MODEL)
        names_in = [i.name for i in self.session.get_inputs()]
        names_out = [o.name for o in self.session.get_outputs()]
        if names_in != [self.input.name] or self.output.name not in names_out:
            raise ValueError(
                f"{onnx_path}: expected input {self.input.name!r} and output {self.output.name!r} "
                f"(enrichment_light.core.contract), got inputs {names_in} and outputs {names_out}"
            )

    @staticmethod
    def _onnxruntime_session(onnx_path: str | os.PathLike[str], intra_op_threads: int, inter_op_threads: int,
                             allow_spinning: bool, enable_cpu_mem_arena: bool) -> Any:  # fmt: skip
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(intra_op_threads)
        opts.inter_op_num_threads = int(inter_op_threads)
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.enable_cpu_mem_arena = bool(enable_cpu_mem_arena)
        # Spinning is onnxruntime's default and is kept: measured on 2 cores, turning it off makes
        # the pose model ~35% slower (74 vs 54 ms) because workers sleep between parallel sections.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if allow_spinning else "0")
        opts.add_session_config_entry("session.inter_op.allow_spinning", "1" if allow_spinning else "0")
        return ort.InferenceSession(os.fspath(onnx_path), sess_options=opts, providers=["CPUExecutionProvider"])

    @classmethod
    def from_parameters(cls, model_name: str, model_dir: str | os.PathLike[str], params: Mapping[str, str]):
        """Build from the config parameters of the cpu target.

        Parameters: ``onnx_file``, ``intra_op_threads``, ``inter_op_threads``, ``allow_spinning``,
        ``enable_cpu_mem_arena``, ``concurrent_runs``, ``split_batches``, ``runtime`` and (with
        ``runtime: openvino``) ``precision``.
        """
        filename = params.get("onnx_file", "model.onnx")
        if os.path.basename(filename) != filename or filename in ("", ".", ".."):
            raise ValueError(
                f"config parameter 'onnx_file' must be a file name in the version folder, got {filename!r}"
            )
        return cls(
            model_name,
            os.path.join(os.fspath(model_dir), filename),
            intra_op_threads=get_int(params, "intra_op_threads", 0, low=0),
            inter_op_threads=get_int(params, "inter_op_threads", 1, low=0),
            allow_spinning=get_bool(params, "allow_spinning", True),
            enable_cpu_mem_arena=get_bool(params, "enable_cpu_mem_arena", True),
            concurrent_runs=get_int(params, "concurrent_runs", 1, low=1),
            split_batches=get_bool(params, "split_batches", True),
            runtime=params.get("runtime", "onnxruntime"),
            precision=params.get("precision", "fp32"),
        )

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Run one batch (``[N, *input shape]``) and return the output ``[N, *output shape]``."""
        return self.session.run([self.output.name], {self.input.name: batch})[0]

    def run_many(self, batches: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Run several batches (one per request): concurrently (``concurrent_runs``), else one run per shape.

        With concurrent runs and fewer batches than runs, large batches are split by rows first
        (:meth:`split_rows`); each batch's output is the concatenation of its pieces' outputs.
        """
        if self._pool is not None:
            pieces = self.split_rows(batches) if self.split_batches else [[b] for b in batches]
            flat = [piece for parts in pieces for piece in parts]
            if len(flat) == 1:
                return [self.run(flat[0])]
            done = iter(list(self._pool.map(self.run, flat)))
            return [next(done) if len(parts) == 1 else np.concatenate([next(done) for _ in parts]) for parts in pieces]
        if len(batches) == 1:
            return [self.run(batches[0])]
        groups: dict[tuple[int, ...], list[int]] = {}
        for k, batch in enumerate(batches):
            groups.setdefault(batch.shape[1:], []).append(k)
        outs: list[Any] = [None] * len(batches)
        for members in groups.values():
            out = self.run(np.concatenate([batches[k] for k in members]))
            start = 0
            for k in members:
                outs[k] = out[start : start + batches[k].shape[0]]
                start += batches[k].shape[0]
        return outs

    def split_rows(self, batches: Sequence[np.ndarray]) -> list[list[np.ndarray]]:
        """Row pieces of each batch so that ``concurrent_runs`` runs have work (views, no copies).

        While there are fewer pieces than runs, the largest piece (of at least 2 rows) is halved;
        a batch with as many requests as runs, or of single rows, is left as it is.

        Returns:
            One list of consecutive row pieces per batch; concatenating a list gives the batch back.
        """
        pieces = [[b] for b in batches]
        while sum(len(parts) for parts in pieces) < self.concurrent_runs:
            k = max(range(len(pieces)), key=lambda i: pieces[i][0].shape[0] if len(pieces[i]) == 1 else 0)
            if len(pieces[k]) > 1 or pieces[k][0].shape[0] < 2:
                break  # every batch is split once or is a single row
            rows = pieces[k][0].shape[0]
            parts = min(self.concurrent_runs - sum(len(p) for p in pieces) + 1, rows)
            pieces[k] = np.array_split(pieces[k][0], parts)
        return pieces

    def run_requests(self, inputs: Sequence[np.ndarray | None]) -> list[dict[str, np.ndarray] | InvalidInputError]:
        """Check each request's input, run all valid ones as one batch, split the output."""
        checked: list[np.ndarray | InvalidInputError] = []
        for array in inputs:
            try:
                if self.is_detector:
                    checked.append(check_detector_images(array, self.static_hw))
                else:
                    checked.append(check_tensor(self.input.name, array, self.input.dtype, (-1, *self.input.shape)))
            except InvalidInputError as err:
                checked.append(err)
        valid = [k for k, item in enumerate(checked) if not isinstance(item, InvalidInputError)]
        results: list[dict[str, np.ndarray] | InvalidInputError] = list(checked)  # type: ignore[arg-type]
        if valid:
            outs = self.run_many([checked[k] for k in valid])  # type: ignore[misc]
            for k, out in zip(valid, outs, strict=True):
                results[k] = {self.output.name: out}
        return results


def python_model_class(pb: Any) -> type:
    """The ``TritonPythonModel`` of every cpu-target inference model: an :class:`OnnxRuntimeRunner`.

    The model name in the config selects the contract; the ONNX file and the onnxruntime threads
    come from the config parameters. `pb` is ``triton_python_backend_utils`` (stub-only).
    """
    from enrichment_light.core.params import parameters
    from enrichment_light.serving.triton import input_array, to_responses

    class TritonPythonModel:
        def initialize(self, args: Mapping[str, str]) -> None:
            config = json.loads(args["model_config"])
            model_dir = os.path.join(args["model_repository"], args["model_version"])
            try:
                self.runner = OnnxRuntimeRunner.from_parameters(config["name"], model_dir, parameters(config))
            except Exception as err:
                raise pb.TritonModelException(f"{config['name']}: cannot load the ONNX model: {err}") from err

        def execute(self, requests: Sequence[Any]) -> list[Any]:
            inputs = [input_array(pb, r, self.runner.input.name) for r in requests]
            return to_responses(pb, self.runner.run_requests(inputs))

    return TritonPythonModel
