"""The repository ``enrichment-light serve`` runs: ONNX exports plus the ``cpu`` target build.

Registered in the ``enrichment_light.repository_builders`` entry-point group as ``cpu``; the
``enrichment-light`` CLI finds it there, so it never imports this package.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from enrichment_export.onnx_export import export_onnx, untrained_model
from enrichment_export.repository import MANIFEST_NAME, build_repository
from enrichment_export.weights import DEFAULT_WEIGHTS, resolve_weights
from enrichment_light.core import contract as ct

logger = logging.getLogger(__name__)


def build_cpu_repository(
    out_dir: Path, *, untrained: bool, weights: dict[str, str] | None = None, rebuild: bool = False
) -> Path:
    """Export the three models to ONNX and build the ``cpu`` target repository.

    Args:
        out_dir: Repository folder (its ``artifacts`` sibling holds the ONNX files).
        untrained: Random-init weights (offline smoke runs; results are meaningless).
        weights: Weights per contract model name (file path or official name); defaults to
            :data:`enrichment_export.weights.DEFAULT_WEIGHTS`.
        rebuild: Rebuild even when ``repository.json`` exists.

    Returns:
        The repository folder.
    """
    if (out_dir / MANIFEST_NAME).is_file() and not rebuild:
        logger.info("using the existing repository %s (pass --rebuild to rebuild)", out_dir)
        return out_dir
    artifacts = out_dir.parent / f"{out_dir.name}-artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    chosen = {**DEFAULT_WEIGHTS, **(weights or {})}
    for model in ct.INFERENCE_MODELS:
        source: Any = untrained_model(model) if untrained else resolve_weights(chosen[model])
        export_onnx(model, source, artifacts / f"{model}.onnx")
    build_repository(out_dir, target="cpu", artifacts=artifacts, allowed_roots=[out_dir.parent])
    return out_dir
