"""Single-core timings of the processing core: pose postprocess, letterbox, decode.

Run: ``.venv/bin/python benchmarks/bench_processing.py [--repeat 200] [--json out.json]``

OpenCV is pinned to one thread (``cv2.setNumThreads(1)``); the NumPy code is elementwise and
uses no BLAS, so it runs on one core too. Every figure is therefore a single-core figure.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from enrichment_light.core.contract import NUM_ANCHORS_640, POSE_RAW_CHANNELS
from enrichment_light.core.processing.detection import postprocess_pose
from enrichment_light.core.processing.image import LetterboxInfo, decode_image, letterbox


def _time(fn: Callable[[], object], repeat: int, warmup: int = 5) -> dict[str, float]:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e3)
    samples.sort()
    return {
        "median_ms": statistics.median(samples),
        "p90_ms": samples[int(0.9 * (len(samples) - 1))],
        "min_ms": samples[0],
    }


def _pose_raw(rng: np.random.Generator, above: int) -> np.ndarray:
    """A realistic-looking pose head output: `above` anchors score above 0.25."""
    a = NUM_ANCHORS_640
    raw = np.empty((1, POSE_RAW_CHANNELS, a), np.float32)
    raw[0, 0:2] = rng.uniform(0, 640, (2, a))
    raw[0, 2:4] = rng.uniform(10, 250, (2, a))
    raw[0, 4] = rng.uniform(0, 0.2, a)
    raw[0, 4, rng.choice(a, above, replace=False)] = rng.uniform(0.3, 1.0, above)
    raw[0, 5:] = rng.uniform(0, 640, (51, a))
    raw[0, 7::3] = rng.uniform(0, 1, (17, a))
    return raw


def _test_photo() -> np.ndarray:
    import ultralytics

    path = Path(ultralytics.__file__).parent / "assets" / "bus.jpg"
    img = cv2.imdecode(np.frombuffer(path.read_bytes(), np.uint8), cv2.IMREAD_COLOR_RGB)
    return cv2.resize(img, (1920, 1080), interpolation=cv2.INTER_LINEAR)


def run(repeat: int) -> list[dict[str, object]]:
    """Run every case; returns one row per case."""
    cv2.setNumThreads(1)
    rng = np.random.default_rng(0)
    info = [LetterboxInfo.for_shape(1080, 1920)]
    rows: list[dict[str, object]] = []

    for above, target in ((100, 1.0), (NUM_ANCHORS_640, 15.0)):
        raw = _pose_raw(rng, above)
        kept = len(postprocess_pose(raw, info, conf=0.25, iou=0.7, max_det=100)[0])
        stats = _time(lambda raw=raw: postprocess_pose(raw, info, conf=0.25, iou=0.7, max_det=100), repeat)
        rows.append({"case": f"postprocess_pose, {above} above conf ({kept} kept)", "target_ms": target, **stats})

    photo = _test_photo()
    stats = _time(lambda: letterbox(photo), repeat)
    rows.append({"case": "letterbox 1920x1080 -> 640x640", "target_ms": 3.0, **stats})

    jpeg = cv2.imencode(".jpg", photo[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
    buf = np.frombuffer(jpeg, np.uint8)
    ours = _time(lambda: decode_image(jpeg), repeat)
    base = _time(lambda: cv2.imdecode(buf, cv2.IMREAD_COLOR), repeat)
    rows.append({"case": f"decode_image 1920x1080 JPEG ({len(jpeg) // 1024} KiB)", "target_ms": None, **ours})
    rows.append({"case": "cv2.imdecode same JPEG (BGR, baseline)", "target_ms": None, **base})
    rows.append({"case": "ratio decode_image / cv2.imdecode (median)", "ratio": ours["median_ms"] / base["median_ms"]})
    return rows


def to_markdown(rows: list[dict[str, object]]) -> str:
    """Render the rows as a Markdown table."""
    lines = ["| case | median ms | p90 ms | min ms | target ms |", "|---|---|---|---|---|"]
    for row in rows:
        if "ratio" in row:
            lines.append(f"| {row['case']} | {row['ratio']:.3f} | | | |")
            continue
        target = "" if row["target_ms"] is None else f"<= {row['target_ms']:g}"
        lines.append(
            f"| {row['case']} | {row['median_ms']:.3f} | {row['p90_ms']:.3f} | {row['min_ms']:.3f} | {target} |"
        )
    return "\n".join(lines)


def main() -> None:
    """CLI entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=200, help="timed runs per case (default 200)")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args()
    rows = run(args.repeat)
    print(
        f"Single core (cv2.setNumThreads(1)); {platform.processor() or platform.machine()}, numpy {np.__version__}, "
        f"OpenCV {cv2.__version__}\n"
    )
    print(to_markdown(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
