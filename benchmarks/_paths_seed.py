"""Path (a): the seed-equivalent in-process path, Ultralytics/PyTorch for pose and threat, torch OSNet for re-id.

The seed called ``YOLO(...).predict()`` on each frame. That does not run here: PyPI's torchvision is a
CUDA build that does not import on CPU torch, and ``predict()`` imports it. This path reproduces what
``predict()`` does per image, with the same cost, from the same Ultralytics functions:

1. ``cv2.imdecode`` (BGR, as ``predict`` reads frames);
2. ``ultralytics.data.augment.LetterBox(new_shape=640, auto=True, stride=32)``, i.e. the minimal
   rectangle ``predict`` uses for one image on a PyTorch model (bus.jpg -> 640x480, zidane.jpg ->
   384x640), then BGR->RGB, HWC->CHW, ``/255``;
3. the forward pass of the **fused** model (``AutoBackend`` fuses Conv+BN) under ``torch.inference_mode``;
4. ``ultralytics.utils.nms.non_max_suppression`` and ``ultralytics.utils.ops.scale_boxes`` /
   ``scale_coords`` back to the original pixels.

The pose rules and the threat taxonomy (microseconds) are our processing core in all three paths,
so only the model path differs. Re-id follows the seed's torchreid test transform: PIL bilinear
resize to 128x256, ``ToTensor``, ImageNet normalisation (done in torch here, as torchvision cannot
be imported), then the torch OSNet and an L2 normalisation, one batch for all crops.
"""

from __future__ import annotations

import copy
import threading
from typing import Any

import cv2
import numpy as np
import torch

from enrichment_light.core import contract as ct
from enrichment_light.core.processing.detection import Detections
from enrichment_light.core.processing.pose_rules import classify_poses
from enrichment_light.core.processing.threat import ThreatTaxonomy, select_threats


def _fused(model: torch.nn.Module) -> torch.nn.Module:
    model = copy.deepcopy(model).float().eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model.fuse(verbose=False) if hasattr(model, "fuse") else model


class SeedPath:
    """Ultralytics/PyTorch pose + threat and torch OSNet, per image, in process."""

    name = "a_seed_torch"
    label = "(a) Ultralytics/PyTorch"

    def __init__(self, pose_model: torch.nn.Module, threat_model: torch.nn.Module, osnet: torch.nn.Module,
                 *, conf: float = 0.5, iou: float = 0.7, threads: int = 2) -> None:  # fmt: skip
        from ultralytics.data.augment import LetterBox

        torch.set_num_threads(threads)
        # Ultralytics models are not thread-safe (the Detect head caches anchors per input shape), and
        # Ultralytics' advice is one model per thread: each worker thread gets its own fused copies.
        self._sources = {"pose": _fused(pose_model), "threat": _fused(threat_model)}
        self._local = threading.local()
        self.osnet = copy.deepcopy(osnet).float().eval()
        self.conf, self.iou = conf, iou
        self.names = {int(k): str(v) for k, v in dict(threat_model.names).items()}
        self.mapping = ThreatTaxonomy.load().resolve([self.names[i] for i in range(len(self.names))])
        self.letterbox = LetterBox(new_shape=(ct.DETECTOR_INPUT_SIZE, ct.DETECTOR_INPUT_SIZE), auto=True, stride=32)
        self.mean = torch.tensor(ct.IMAGENET_MEAN).view(1, 3, 1, 1)
        self.std = torch.tensor(ct.IMAGENET_STD).view(1, 3, 1, 1)

    def _model(self, kind: str) -> torch.nn.Module:
        models = self._local.__dict__.setdefault("models", {})
        if kind not in models:
            models[kind] = copy.deepcopy(self._sources[kind])
        return models[kind]

    # -- detector path (what YOLO.predict does for one image) -------------------------------------

    def _predict(self, model: torch.nn.Module, data: bytes, nc: int) -> tuple[torch.Tensor, tuple, tuple]:
        from ultralytics.utils.nms import non_max_suppression

        im0 = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if im0 is None:
            raise ValueError("could not decode image")
        img = self.letterbox(image=im0)
        img = np.ascontiguousarray(img[..., ::-1].transpose(2, 0, 1))
        x = torch.from_numpy(img)[None].float() / 255.0
        with torch.inference_mode():
            preds = model(x)
            det = non_max_suppression(preds, self.conf, self.iou, nc=nc, max_det=300)[0]
        return det, tuple(x.shape[2:]), im0.shape

    def pose(self, data: bytes) -> int:
        from ultralytics.utils.ops import scale_boxes, scale_coords

        det, shape, shape0 = self._predict(self._model("pose"), data, nc=1)
        boxes = scale_boxes(shape, det[:, :4].clone(), shape0).numpy()
        kpts = det[:, 6:].reshape(-1, ct.NUM_KEYPOINTS, ct.KEYPOINT_DIMS).clone()
        kpts = scale_coords(shape, kpts, shape0).numpy()
        classify_poses(kpts, boxes)
        return int(det.shape[0])

    def threat(self, data: bytes) -> int:
        from ultralytics.utils.ops import scale_boxes

        det, shape, shape0 = self._predict(self._model("threat"), data, nc=len(self.names))
        boxes = scale_boxes(shape, det[:, :4].clone(), shape0).numpy()
        dets = Detections(boxes, det[:, 4].numpy(), det[:, 5].numpy().astype(np.int32))
        return len(select_threats(dets, self.mapping))

    # -- re-id (torchreid's test transform + torch OSNet) ------------------------------------------

    def reid(self, crops: list[np.ndarray]) -> int:
        from PIL import Image

        resized = [
            np.asarray(Image.fromarray(c).resize((ct.REID_INPUT_WIDTH, ct.REID_INPUT_HEIGHT), Image.BILINEAR))
            for c in crops
        ]
        x = torch.from_numpy(np.stack(resized)).permute(0, 3, 1, 2).float() / 255.0
        with torch.inference_mode():
            v = self.osnet((x - self.mean) / self.std)
            v = torch.nn.functional.normalize(v, p=2, dim=1)
        return int(v.shape[0])

    def close(self) -> None:
        pass


def load_models(weights: dict[str, str | None]) -> dict[str, Any]:
    """Torch modules per contract model: user checkpoints where given, else random init from the YAMLs."""
    from enrichment_export.onnx_export import load_yolo_checkpoint, untrained_model

    out: dict[str, Any] = {}
    for name in ct.INFERENCE_MODELS:
        path = weights.get(name)
        if path is None:
            out[name] = untrained_model(name)
        elif name == ct.REID_MODEL:
            from enrichment_export.osnet import load_osnet_x0_25

            out[name] = load_osnet_x0_25(path)
        else:
            out[name] = load_yolo_checkpoint(path)
    return out
