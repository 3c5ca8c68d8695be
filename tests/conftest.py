"""Shared pytest setup: offline Ultralytics, gpu marker handling."""

from __future__ import annotations

import os
import tempfile

# Keep Ultralytics offline and out of the user's home before anything imports it.
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "0")
os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="yolo-config-"))
os.environ.setdefault("YOLO_VERBOSE", "False")

import pytest


def _gpu_skip_reason() -> str | None:
    """Why `gpu` tests cannot run here (the driver's own words), or None. Asks nvidia-smi, not torch:
    the plan-builder image has no torch."""
    try:
        from enrichment_export.tensorrt_plan import DeviceUnavailableError, query_gpu
    except ImportError as err:
        return f"needs an NVIDIA GPU; the GPU probe does not import: {err}"
    try:
        query_gpu()
    except DeviceUnavailableError as err:
        return f"needs an NVIDIA GPU: {err}"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not any("gpu" in item.keywords for item in items):
        return
    reason = _gpu_skip_reason()
    if reason is None:
        return
    skip_gpu = pytest.mark.skip(reason=reason)
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
