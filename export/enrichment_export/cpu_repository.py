"""The repository ``enrichment-light serve`` runs: ONNX exports plus the ``cpu`` target build.

Registered in the ``enrichment_light.repository_builders`` entry-point group as ``cpu``; the
``enrichment-light`` CLI finds it there, so it never imports this package.
"""

from __future__ import annotations

import hashlib
import json
import logging
from importlib import resources
from pathlib import Path
from typing import Any

from enrichment_export.onnx_export import export_onnx, untrained_model
from enrichment_export.repository import MANIFEST_NAME, BuildOptions, build_repository
from enrichment_export.weights import DEFAULT_WEIGHTS, resolve_weights
from enrichment_light.core import contract as ct
from enrichment_light.core import package_data

logger = logging.getLogger(__name__)


#: What ``serve`` built a repository from, next to its ``repository.json``.
BUILD_KEY_NAME = "serve-build.json"


def build_key(*, untrained: bool, weights: dict[str, str], reid_precision: str = "fp32") -> str:
    """A digest of what decides the repository ``serve`` builds: the weights and the builder's own sources.

    A weights file counts with its size and modification time.

    The sources are the exporters (config generation, CPU tuning) and the package data the builder
    copies (``model.py`` files): a new version of either gives a new key, so a repository that an older
    version built is rebuilt instead of served with stale configs.
    """
    stats = {k: Path(v).stat() for k, v in weights.items() if Path(v).is_file()}
    files = {k: [st.st_size, st.st_mtime_ns] for k, st in stats.items()}
    record = {"untrained": untrained, "weights": weights, "weight_files": files}
    if reid_precision != "fp32":  # absent for FP32, so repositories built before the option stay current
        record["reid_precision"] = reid_precision
    digest = hashlib.sha256(json.dumps(record, sort_keys=True).encode())
    stack = [resources.files("enrichment_export"), package_data.root()]
    while stack:
        for item in sorted(stack.pop().iterdir(), key=lambda i: i.name):
            if item.is_dir() and item.name != "__pycache__":
                stack.append(item)
            elif item.name.endswith((".py", ".json", ".yaml")):
                digest.update(item.name.encode() + item.read_bytes())
    digest.update(resources.files("enrichment_light").joinpath("core", "contract.py").read_bytes())
    return digest.hexdigest()


def _stale_reason(out_dir: Path, key: str, *, managed: bool) -> str | None:
    """Why the existing repository in `out_dir` must be rebuilt; None to serve it as it is."""
    try:
        recorded = json.loads((out_dir / BUILD_KEY_NAME).read_text())["key"]
    except FileNotFoundError:
        return "it has no build record (built by an older version)" if managed else None
    except (OSError, ValueError, KeyError, TypeError):
        return f"its {BUILD_KEY_NAME} is unreadable"
    return None if recorded == key else "the builder, its package data or the weights changed since it was built"


def build_cpu_repository(
    out_dir: Path,
    *,
    untrained: bool,
    weights: dict[str, str] | None = None,
    rebuild: bool = False,
    managed: bool = False,
    reid_precision: str = "fp32",
) -> Path:
    """Export the three models to ONNX and build the ``cpu`` target repository, unless it is current.

    An existing repository is served as it is when its build record matches :func:`build_key`. It is
    rebuilt when the record differs (another version of the builder, other weights), and, for the
    folder ``serve`` manages (`managed`), when it has no record. A folder you built yourself with
    ``enrichment-export build-repository`` has no record and is served as it is.

    Args:
        out_dir: Repository folder (its ``artifacts`` sibling holds the ONNX files).
        untrained: Random-init weights (offline smoke runs; results are meaningless).
        weights: Weights per contract model name (file path or official name); defaults to
            :data:`enrichment_export.weights.DEFAULT_WEIGHTS`.
        rebuild: Rebuild even when the repository is current.
        managed: `out_dir` is ``serve``'s own folder in the user cache.
        reid_precision: ``fp32``, or ``bf16``: OSNet through OpenVINO in bf16, gated on the
            packaged photos (``BuildOptions.osnet_precision``); part of the build key.

    Returns:
        The repository folder.
    """
    chosen = {**DEFAULT_WEIGHTS, **(weights or {})}
    key = build_key(untrained=untrained, weights={} if untrained else chosen, reid_precision=reid_precision)
    if (out_dir / MANIFEST_NAME).is_file() and not rebuild:
        if (reason := _stale_reason(out_dir, key, managed=managed)) is None:
            logger.info("using the existing repository %s (pass --rebuild to rebuild)", out_dir)
            return out_dir
        logger.warning("rebuilding the repository %s: %s", out_dir, reason)
    artifacts = out_dir.parent / f"{out_dir.name}-artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    for model in ct.INFERENCE_MODELS:
        source: Any = untrained_model(model) if untrained else resolve_weights(chosen[model])
        export_onnx(model, source, artifacts / f"{model}.onnx")
    options = BuildOptions(osnet_precision=reid_precision)
    build_repository(out_dir, target="cpu", artifacts=artifacts, options=options, allowed_roots=[out_dir.parent])
    (out_dir / BUILD_KEY_NAME).write_text(json.dumps({"key": key}) + "\n")
    return out_dir
