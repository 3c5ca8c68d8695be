"""Write perf_analyzer input data for the enrichment-light models.

- ``<out>/image.json``: one small JPEG (bus.jpg resized to 320 px wide) as ``IMAGE_BYTES`` (base64),
  for ``preprocess``, ``pose``, ``threat`` and ``enrich`` (batched models: shape ``[1]``).
- ``<out>/reid.json``: the same JPEG plus two ``PERSON_BOXES`` for ``reid`` and ``reid_crops``
  (``max_batch_size: 0``: full shapes).
- ``<out>/pose_postprocess/`` and ``<out>/threat_postprocess/``: raw binary tensors (one file per
  input, perf_analyzer's directory format): a zero ``output0`` and a valid ``LETTERBOX_INFO``.

The JSON files are committed; the binary folders (2 MB) are written by ``run.sh`` at run time.

Usage: ``python benchmarks/perf_analyzer/make_inputs.py OUT_DIR [--json-only]``
"""

from __future__ import annotations

import argparse
import base64
import json
from pathlib import Path

import cv2
import numpy as np

from enrichment_light.core import contract as ct

NUM_THREAT_CLASSES = 80  # COCO (random-init / stock yolov8n); pass --threat-classes for a custom model


def small_jpeg() -> bytes:
    import ultralytics

    image = cv2.imread(str(Path(ultralytics.__file__).parent / "assets" / "bus.jpg"))
    image = cv2.resize(image, (320, 427), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 80])
    assert ok
    return buf.tobytes()


def write_json(out: Path) -> None:
    data = small_jpeg()
    # perf_analyzer's "b64" is the serialized BYTES tensor: a 4-byte little-endian length, then the bytes
    b64 = base64.b64encode(len(data).to_bytes(4, "little") + data).decode("ascii")
    image = {"data": [{ct.IMAGE_BYTES: {"b64": b64, "shape": [1]}}]}
    (out / "image.json").write_text(json.dumps(image) + "\n", encoding="utf-8")
    boxes = [20.0, 100.0, 120.0, 400.0, 200.0, 90.0, 300.0, 410.0]
    item = {ct.IMAGE_BYTES: {"b64": b64, "shape": [1]}, ct.PERSON_BOXES: {"content": boxes, "shape": [2, 4]}}
    reid = {"data": [item]}
    (out / "reid.json").write_text(json.dumps(reid) + "\n", encoding="utf-8")


def write_postprocess_dirs(out: Path, threat_classes: int) -> None:
    info = np.array([427, 320, 1.5, 80, 0], np.float32)  # orig_h, orig_w, gain, pad_left, pad_top
    for model, channels in ((ct.POSE_POSTPROCESS, ct.POSE_RAW_CHANNELS), (ct.THREAT_POSTPROCESS, 4 + threat_classes)):
        folder = out / model
        folder.mkdir(parents=True, exist_ok=True)
        np.zeros((channels, ct.NUM_ANCHORS_640), np.float32).tofile(folder / ct.RAW_OUTPUT)
        info.tofile(folder / ct.LETTERBOX_INFO)
        np.array([0.5], np.float32).tofile(folder / ct.CONF_THRESHOLD)  # perf_analyzer sends optional inputs too
        np.array([0.7], np.float32).tofile(folder / ct.IOU_THRESHOLD)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path)
    p.add_argument("--json-only", action="store_true")
    p.add_argument("--threat-classes", type=int, default=NUM_THREAT_CLASSES)
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out)
    if not args.json_only:
        write_postprocess_dirs(args.out, args.threat_classes)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
