"""Model-config parsing: which backend serves a model (:class:`BackendInfo`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# --------------------------------------------------------------------------------------------
# Backend introspection
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BackendInfo:
    """Which backend serves a model, read from its config and the repository manifest.

    Attributes:
        model: Model name.
        backend: ``"tensorrt"``, ``"onnxruntime"``, ``"python"`` or ``"ensemble"`` - what runs the
            network (a Python-backend model that runs onnxruntime reports ``"onnxruntime"``).
        platform: The config's raw ``platform`` / ``backend`` field.
        runner: ``"native"`` for a Triton backend, ``"python"`` when the Python backend hosts it.
        device: ``"gpu"`` or ``"cpu"`` from the instance group (``"unknown"`` when unset).
        manifest: The model's entry in ``repository.json`` when one was found, else ``{}``.
        precision: ``"fp32"``, ``"int8"`` or ``"fp16"``: the ``precision`` config parameter, else
            the manifest's, else ``"fp32"`` for a network (the repository builder writes the
            parameter for every other precision); ``"-"`` for models without a network.
    """

    model: str
    backend: str
    platform: str
    runner: str
    device: str
    manifest: Mapping[str, Any] = field(default_factory=dict)
    precision: str = "unknown"

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict."""
        return {
            "model": self.model,
            "backend": self.backend,
            "platform": self.platform,
            "runner": self.runner,
            "device": self.device,
            "precision": self.precision,
            "manifest": dict(self.manifest),
        }


# Config parameters a Python-backend model may carry to say what it runs (hand-written
# repositories); the builder's onnxruntime runners are recognised by their ``onnx_file``.
RUNTIME_PARAMETERS = ("inference_backend", "runtime", "backend")


def config_body(config: Mapping[str, Any]) -> Mapping[str, Any]:
    """Unwrap gRPC's ``{"config": {...}}`` so gRPC and HTTP configs look the same."""
    inner = config.get("config")
    return inner if isinstance(inner, Mapping) else config


def config_parameters(config: Mapping[str, Any]) -> dict[str, str]:
    """A model config's ``parameters`` as a plain ``{key: string_value}`` dict."""
    from enrichment_light.core.params import parameters

    return parameters(config_body(config))


def backend_from_config(config: Mapping[str, Any], manifest: Mapping[str, Any] | None = None) -> BackendInfo:
    """Derive :class:`BackendInfo` from a model config (gRPC or HTTP JSON form).

    Args:
        config: The model config as returned by tritonclient's ``get_model_config``.
        manifest: The model's entry in ``repository.json``, if known.
    """
    body = config_body(config)
    name = str(body.get("name", ""))
    platform = str(body.get("platform") or body.get("backend") or "")
    raw = platform.lower()
    params = config_parameters(body)
    runner = "native"
    if raw in ("tensorrt_plan", "tensorrt"):
        backend = "tensorrt"
    elif raw in ("onnxruntime_onnx", "onnxruntime"):
        backend = "onnxruntime"
    elif raw == "ensemble":
        backend = "ensemble"
    elif raw == "python":
        runner = "python"
        explicit = next((params[k].lower() for k in RUNTIME_PARAMETERS if params.get(k)), None)
        # The builder's Python-backend onnxruntime runners carry the ONNX file name.
        backend = explicit or ("onnxruntime" if params.get("onnx_file") else "python")
        if manifest and manifest.get("serving"):
            backend = str(manifest["serving"])
    else:
        backend = raw or "unknown"
    kinds = {str(g.get("kind", "")) for g in body.get("instance_group") or []}
    if any("GPU" in k for k in kinds):
        device = "gpu"
    elif any("CPU" in k for k in kinds):
        device = "cpu"
    else:
        device = "unknown"
    precision = params.get("precision") or str((manifest or {}).get("precision") or "")
    if not precision:
        precision = "fp32" if backend in ("tensorrt", "onnxruntime") else "-"
    return BackendInfo(name, backend, platform, runner, device, dict(manifest or {}), precision.lower())
