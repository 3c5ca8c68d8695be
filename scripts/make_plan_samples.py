"""Write ``export/enrichment_export/data/plan_samples.npz``: the plan verifier's real inputs.

``images``: Ultralytics' ``bus.jpg`` and ``zidane.jpg`` (AGPL-3.0, shipped in the ultralytics
package) letterboxed to 640x640 by :func:`enrichment_light.core.processing.image.letterbox`, exactly as
the ``preprocess`` model does. ``crops``: the six people in them, cropped with the serving crop
function (``reid_crops``) from person boxes picked by hand (pixels of the original photos).
Run once, with Ultralytics installed (only to find the photos): ``python scripts/make_plan_samples.py``.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np

from enrichment_light.cli import sample_images
from enrichment_light.core.processing.image import decode_image, letterbox
from enrichment_light.core.processing.reid import extract_person_crops

OUT = Path(__file__).resolve().parents[1] / "export" / "enrichment_export" / "data" / "plan_samples.npz"
PERSON_BOXES = {  # x1, y1, x2, y2 in the original photo
    "bus.jpg": [(50, 400, 245, 905), (670, 380, 810, 875), (220, 405, 345, 860), (0, 550, 65, 870)],
    "zidane.jpg": [(745, 40, 1140, 710), (120, 195, 710, 715)],
}


def main() -> int:
    """Write the samples; exit 1 when the photos are not found."""
    photos = {p.name: p for p in sample_images()}
    if set(photos) != set(PERSON_BOXES):
        print(f"need {sorted(PERSON_BOXES)} from the ultralytics package, found {sorted(photos)}", file=sys.stderr)
        return 1
    images, crops = [], []
    for name, boxes in PERSON_BOXES.items():
        rgb = decode_image(photos[name].read_bytes())
        images.append(letterbox(rgb)[0])
        crops.append(extract_person_crops(rgb, np.asarray(boxes, dtype=np.float32)))
    buf = io.BytesIO()
    np.savez_compressed(buf, images=np.stack(images), crops=np.concatenate(crops))
    OUT.write_bytes(buf.getvalue())
    print(f"wrote {OUT} ({len(buf.getvalue())} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
