"""In-process reference for the serving tests: the processing core + onnxruntime, no Triton.

Deliberately built from the core functions (decode_image, letterbox, postprocess_*, select_threats,
crop_persons) rather than from ``enrichment_light.serving.pipeline``, so that the server's
results are compared with an independent composition of the same pieces.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import onnxruntime as ort

from enrichment_light.core import contract as ct
from enrichment_light.core.processing.detection import pad_pose, postprocess_detections, postprocess_pose
from enrichment_light.core.processing.image import decode_image, letterbox
from enrichment_light.core.processing.reid import crop_persons
from enrichment_light.core.processing.threat import ThreatTaxonomy, pad_threats, select_threats


class Reference:
    """The pipeline run in process on the same ONNX files the server serves."""

    def __init__(self, repository: Path, class_names: list[str], *, rect: bool = True) -> None:
        self.rect = rect  # the server's letterbox mode (rect unless the repository was built square)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 2
        opts.inter_op_num_threads = 1
        self.sessions = {
            name: ort.InferenceSession(
                str(repository / name / "1" / "model.onnx"), sess_options=opts, providers=["CPUExecutionProvider"]
            )
            for name in ct.INFERENCE_MODELS
        }
        self.mapping = ThreatTaxonomy.load().resolve(class_names)

    def run(self, model: str, batch: np.ndarray) -> np.ndarray:
        session = self.sessions[model]
        return session.run(None, {session.get_inputs()[0].name: batch})[0]

    def letterboxed(self, data: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        image = decode_image(data)
        boxed, info = letterbox(image, auto=self.rect)
        return image, boxed, info.to_array()

    def pose(self, data: bytes, conf: float, iou: float = 0.7) -> dict[str, np.ndarray]:
        _, boxed, info = self.letterboxed(data)
        raw = self.run(ct.POSE_MODEL, boxed[None])
        return pad_pose(postprocess_pose(raw, info[None], conf=conf, iou=iou, max_det=ct.MAX_DETECTIONS)[0])

    def threat(self, data: bytes, conf: float, iou: float = 0.7) -> dict[str, np.ndarray]:
        _, boxed, info = self.letterboxed(data)
        raw = self.run(ct.THREAT_MODEL, boxed[None])
        dets = postprocess_detections(raw, info[None], conf=conf, iou=iou, max_det=ct.MAX_DETECTIONS)[0]
        return pad_threats(select_threats(dets, self.mapping), ct.MAX_DETECTIONS)

    def embeddings(self, data: bytes, boxes: np.ndarray) -> np.ndarray:
        crops = crop_persons(decode_image(data), boxes)
        return self.run(ct.REID_MODEL, crops)


def png_header_only(width: int, height: int) -> bytes:
    """A structurally valid PNG whose header claims `width` x `height` (no real pixel data)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00")) + chunk(b"IEND", b"")
