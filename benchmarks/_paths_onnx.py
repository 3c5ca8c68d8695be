"""Path (b): bare onnxruntime in process on the ONNX files the server serves, plus our processing core.

Per image: ``decode_image`` -> ``letterbox`` (640x640, or with ``rect=True`` the minimal stride-32
rectangle, both Ultralytics-exact) -> ``session.run`` on the
uint8 NHWC tensor -> ``postprocess_pose`` / ``postprocess_detections`` + ``select_threats``. Re-id:
``resize_crops`` (PIL-exact) -> ``session.run``. Session options equal the served models'
(intra-op threads 2, inter-op 1, sequential, all graph optimisations), so (c) - (b) is Triton's cost.
``reid_bf16=True`` runs OSNet through OpenVINO in bf16 instead (``--reid-precision bf16``'s runtime).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime as ort

from enrichment_light.core import contract as ct
from enrichment_light.core.processing.detection import postprocess_detections, postprocess_pose
from enrichment_light.core.processing.image import decode_image, letterbox
from enrichment_light.core.processing.reid import resize_crops
from enrichment_light.core.processing.threat import ThreatTaxonomy, select_threats


class OnnxRuntimePath:
    """onnxruntime sessions + the processing core, in process."""

    def __init__(self, repository: Path, class_names: list[str], *, conf: float = 0.5, iou: float = 0.7,
                 intra_op_threads: int = 2, rect: bool = False, onnx: dict[str, Path] | None = None,
                 tag: str = "", per_frame: bool = False, workloads: tuple[str, ...] | None = None,
                 reid_bf16: bool = False) -> None:  # fmt: skip
        self.rect = rect
        if workloads is not None:
            self.workloads = workloads
        # per_frame: pose and threat of one frame run side by side (decoded once), as analyze_frame asks
        self.per_frame = per_frame
        self._pool = ThreadPoolExecutor(8, thread_name_prefix="ort-frame") if per_frame else None
        self.name = "b_onnxruntime" + ("_rect" if rect else "") + (f"_{tag}" if tag else "")
        self.label = "(b) bare onnxruntime" + (", rect" if rect else ", 640x640") + (f", {tag}" if tag else "")
        onnx = onnx or {}
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = intra_op_threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.sessions = {
            name: ort.InferenceSession(
                str(onnx.get(name, repository / name / "1" / "model.onnx")),
                sess_options=opts,
                providers=["CPUExecutionProvider"],
            )
            for name in ct.INFERENCE_MODELS
        }
        if reid_bf16:  # OSNet compiled by OpenVINO in bf16, as `--reid-precision bf16` serves it
            from enrichment_light.core.openvino_session import OpenVinoSession

            reid_onnx = onnx.get(ct.REID_MODEL, repository / ct.REID_MODEL / "1" / "model.onnx")
            bf16 = OpenVinoSession(reid_onnx, precision="bf16", threads_per_stream=intra_op_threads)
            self.sessions[ct.REID_MODEL] = bf16
        self.mapping = ThreatTaxonomy.load().resolve(class_names)
        self.conf, self.iou = conf, iou

    def _run(self, model: str, batch: np.ndarray) -> np.ndarray:
        session = self.sessions[model]
        return session.run(None, {session.get_inputs()[0].name: batch})[0]

    def _letterboxed(self, data: bytes) -> tuple[np.ndarray, np.ndarray]:
        boxed, info = letterbox(decode_image(data), auto=self.rect)
        return boxed[None], info.to_array()[None]

    def _poses(self, raw: np.ndarray, info: np.ndarray) -> int:
        return len(postprocess_pose(raw, info, conf=self.conf, iou=self.iou, max_det=ct.MAX_DETECTIONS)[0])

    def _threats(self, raw: np.ndarray, info: np.ndarray) -> int:
        dets = postprocess_detections(raw, info, conf=self.conf, iou=self.iou, max_det=ct.MAX_DETECTIONS)[0]
        return len(select_threats(dets, self.mapping))

    def pose(self, data: bytes) -> int:
        batch, info = self._letterboxed(data)
        return self._poses(self._run(ct.POSE_MODEL, batch), info)

    def threat(self, data: bytes) -> int:
        batch, info = self._letterboxed(data)
        return self._threats(self._run(ct.THREAT_MODEL, batch), info)

    def frame(self, data: bytes) -> int:
        """Pose and threat of one frame at once: the pose run on a pool thread, threat on this one."""
        batch, info = self._letterboxed(data)
        pose_raw = self._pool.submit(self._run, ct.POSE_MODEL, batch)
        threat_raw = self._run(ct.THREAT_MODEL, batch)
        return self._poses(pose_raw.result(), info) + self._threats(threat_raw, info)

    def reid(self, crops: list[np.ndarray]) -> int:
        return int(self._run(ct.REID_MODEL, resize_crops(crops)).shape[0])

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
        self.sessions.clear()
