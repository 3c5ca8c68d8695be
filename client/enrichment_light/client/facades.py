"""Seed-compatible facades: ``PersonReID``, ``PoseEstimator``, ``ThreatDetector`` and ``load_*``.

They keep the seed's names, constructor arguments, methods and result types, so code written
against the original in-process models keeps working; the models now run on a Triton server.
Only the constructor may need a change: ``url=`` (default ``$ENRICHMENT_TRITON_URL``, else
``localhost:8001`` gRPC).

Differences from the seed, on purpose:

- ``model_path`` is validated (``validate_model_path``) and kept for :meth:`get_backend_info`; the
  server decides which file it serves. ``device`` is reported, not used.
- ``use_tensorrt`` and the seed's environment variables (``POSE_USE_TENSORRT``,
  ``THREAT_USE_TENSORRT`` / ``THREAT_DETECTOR_USE_TENSORRT``) only set ``tensorrt_requested``;
  ``tensorrt_active`` reports what the server really runs.
- ``load_model()`` waits until the model is ready; when it is not, it asks the server to load it
  through the repository API, which works only when Triton runs with
  ``--model-control-mode=explicit``. ``unload()`` unloads through the same API (a no-op with a
  logged warning in the other modes). Unloading a detector unloads its network and
  postprocessor; the shared ``preprocess`` model stays, and ``enrich`` fails until it is loaded
  again.
- ``estimate_pose`` keeps the seed's one-result semantics but picks the **most confident**
  person (the seed took the first); with nobody in the image it returns an empty result:
  no keypoints, ``pose_class="unknown"``, ``confidence=0.0``, ``is_suspicious=False``. Use
  :meth:`PoseEstimator.estimate_poses` for every person.
- The ``*_batch`` methods send one request per image concurrently, so the server batches them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from enrichment_light.client.inputs import ImageInput
from enrichment_light.client.results import PoseClass, PoseResult, ReIDResult, ThreatResult
from enrichment_light.client.sync import EnrichmentClient
from enrichment_light.core import contract as ct
from enrichment_light.core.errors import EnrichmentError, ModelNotReadyError
from enrichment_light.core.flags import env_flag

logger = logging.getLogger(__name__)

DEFAULT_LOAD_TIMEOUT_S = 120.0


def _embedding(value: Any) -> np.ndarray:
    if isinstance(value, ReIDResult):
        return np.asarray(value.embedding, dtype=np.float32)
    return np.asarray(value, dtype=np.float32)


class _TritonModel:
    """Shared plumbing: one Triton model behind a seed-style object."""

    #: Models this facade needs ready; the first is the one loaded/unloaded as a whole.
    models: tuple[str, ...] = ()
    #: The inference model whose backend is reported.
    network: str = ""
    #: Extra models unloaded by :meth:`unload` (the ensemble's own members).
    unload_also: tuple[str, ...] = ()
    tensorrt_env: tuple[str, ...] = ()

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        device: str = "cuda",
        *,
        use_tensorrt: bool | None = None,
        url: str | Sequence[str] | None = None,
        protocol: str = "grpc",
        timeout_s: float | None = 30.0,
        load_timeout_s: float = DEFAULT_LOAD_TIMEOUT_S,
        client: EnrichmentClient | None = None,
        **options: Any,
    ) -> None:
        self.model_path = None if model_path is None else self._validate(model_path)
        self.device = device
        if use_tensorrt is None:
            use_tensorrt = env_flag(self.tensorrt_env, default=False)
        self.use_tensorrt = bool(use_tensorrt)
        self.options = dict(options)  # seed-only options (engine paths, fp16...): reported, not used
        self.load_timeout_s = float(load_timeout_s)
        self._owns_client = client is None
        self.client = client if client is not None else EnrichmentClient(url, protocol=protocol, timeout_s=timeout_s)
        self.model_loaded = False

    @staticmethod
    def _validate(model_path: str | os.PathLike[str]) -> str:
        from enrichment_light.core.paths import validate_model_path

        return str(validate_model_path(model_path, must_exist=False))

    # -- lifecycle -------------------------------------------------------------------------------

    def load_model(self) -> None:
        """Wait until the model is ready on the server; ask the server to load it if it is not.

        Raises:
            ServerUnavailableError: The server cannot be reached.
            ModelNotReadyError: The model did not become ready within ``load_timeout_s``.
        """
        # Everything unload() unloaded: on the cpu target `pose`/`threat` are fused Python models, so
        # loading them no longer brings back the detector and postprocessor an ensemble would load.
        wanted = (self.models[0], *self.unload_also)
        for model in wanted:
            if self.client.is_model_ready(model):
                continue
            try:
                self.client.load_model(model)
            except ModelNotReadyError as err:  # e.g. not explicit mode: wait for it instead
                logger.info("could not load %s through the repository API (%s); waiting for it", model, err)
        self.client.wait_until_ready(self.load_timeout_s, models=tuple(dict.fromkeys((*self.models, *wanted))))
        self.model_loaded = True

    def unload(self) -> None:
        """Unload the model through the repository API (explicit model-control mode only).

        Never raises for a server that refuses (other model-control modes) or is gone: the
        failure is logged and the facade is marked unloaded.
        """
        for model in (self.models[0], *self.unload_also):
            try:
                self.client.unload_model(model)
            except EnrichmentError as err:
                logger.warning("could not unload %s: %s", model, err)
        self.model_loaded = False

    def close(self) -> None:
        """Close the client connection (when this object created it)."""
        if self._owns_client:
            self.client.close()

    def __enter__(self) -> _TritonModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get_backend_info(self) -> dict[str, Any]:
        """The seed's backend report, read from the server.

        Returns:
            ``{"backend", "device", "model_path", "tensorrt_requested", "tensorrt_active",
            "model_loaded", "server_url", "model_name", "triton_platform"}``. ``backend`` is what
            the server runs (``tensorrt``, ``onnxruntime``, ``python``) or ``"unavailable"``
            when the server cannot be asked.
        """
        info: dict[str, Any] = {
            "backend": "unavailable",
            "device": self.device,
            "model_path": self.model_path,
            "tensorrt_requested": self.use_tensorrt,
            "tensorrt_active": False,
            "model_loaded": self.model_loaded,
            "server_url": self.client.urls[0],
            "model_name": self.network,
            "triton_platform": None,
        }
        try:
            backend = self.client.backend_info([self.network])[self.network]
        except EnrichmentError as err:
            logger.warning("could not read the backend of %s: %s", self.network, err)
            return info
        info.update(
            backend=backend.backend,
            tensorrt_active=backend.backend == "tensorrt",
            triton_platform=backend.platform,
        )
        if backend.device != "unknown":
            info["device"] = backend.device
        return info


class PersonReID(_TritonModel):
    """OSNet-x0.25 person re-identification served by Triton (512-d L2-normalised embeddings).

    Args:
        model_path: The seed's model path (validated, reported; the server owns the weights).
        device: The seed's device (reported only).
        url: Triton URL(s); default ``$ENRICHMENT_TRITON_URL``, else ``localhost:8001``.
        protocol: ``"grpc"`` or ``"http"``.
        timeout_s: Per-request deadline.
        load_timeout_s: How long :meth:`load_model` waits.
        client: An existing :class:`EnrichmentClient` to share (then `url`/`protocol` are unused).
    """

    models = (ct.REID_MODEL,)
    network = ct.REID_MODEL

    def extract_embedding(self, image: ImageInput) -> ReIDResult:
        """Embed one person crop (numpy RGB, PIL Image, bytes or path; any size)."""
        return self.client.extract_embeddings_from_crops([image])[0]

    def extract_embeddings_batch(self, images: Sequence[ImageInput]) -> list[ReIDResult]:
        """Embed many person crops in one request per ``MAX_PERSONS_PER_FRAME`` crops."""
        return self.client.extract_embeddings_from_crops(list(images))

    def compute_similarity(self, embedding1: Any, embedding2: Any) -> float:
        """Cosine similarity of two embeddings (lists, arrays or ``ReIDResult``), in [-1, 1]."""
        from enrichment_light.core.processing.reid import cosine_similarity

        return cosine_similarity(_embedding(embedding1), _embedding(embedding2))

    def is_same_person(self, embedding1: Any, embedding2: Any, threshold: float = 0.7) -> bool:
        """Whether the similarity is strictly above `threshold` (default 0.7)."""
        return self.compute_similarity(embedding1, embedding2) > threshold


class PoseEstimator(_TritonModel):
    """YOLOv8n-pose with rule-based posture classes, served by Triton.

    Args are as for :class:`PersonReID`, plus ``use_tensorrt`` (default from
    ``$POSE_USE_TENSORRT``; reporting only).
    """

    models = (ct.POSE_ENSEMBLE,)
    network = ct.POSE_MODEL
    unload_also = (ct.POSE_MODEL, ct.POSE_POSTPROCESS)
    tensorrt_env = ("POSE_USE_TENSORRT",)

    def estimate_pose(self, image: ImageInput) -> PoseResult:
        """The pose of the most confident person, or an empty ``unknown`` result for nobody."""
        return _most_confident(self.client.estimate_poses(image))

    def estimate_poses(self, image: ImageInput) -> list[PoseResult]:
        """Every person's pose (not in the seed, which returned one)."""
        return self.client.estimate_poses(image)

    def estimate_poses_batch(self, images: Sequence[ImageInput]) -> list[PoseResult]:
        """:meth:`estimate_pose` for each image (one concurrent request per image)."""
        return [_most_confident(p) for p in self.client.estimate_poses_batch(images)]


class ThreatDetector(_TritonModel):
    """YOLOv8n weapon/threat detection with severities, served by Triton.

    Args are as for :class:`PersonReID`, plus ``use_tensorrt`` (default from
    ``$THREAT_USE_TENSORRT`` or ``$THREAT_DETECTOR_USE_TENSORRT``; reporting only).
    """

    models = (ct.THREAT_ENSEMBLE,)
    network = ct.THREAT_MODEL
    unload_also = (ct.THREAT_MODEL, ct.THREAT_POSTPROCESS)
    tensorrt_env = ("THREAT_USE_TENSORRT", "THREAT_DETECTOR_USE_TENSORRT")

    def detect_threats(self, image: ImageInput, *, conf: float | None = None) -> ThreatResult:
        """Threats in one image (confidence threshold from the server, 0.5, unless `conf`)."""
        return self.client.detect_threats(image, conf=conf)

    def detect_threats_batch(self, images: Sequence[ImageInput], *, conf: float | None = None) -> list[ThreatResult]:
        """:meth:`detect_threats` for each image (one concurrent request per image)."""
        return self.client.detect_threats_batch(images, conf=conf)


EMPTY_POSE = PoseResult(keypoints=[], pose_class=PoseClass.UNKNOWN, confidence=0.0, is_suspicious=False)


def _most_confident(poses: Sequence[PoseResult]) -> PoseResult:
    return max(poses, key=lambda p: p.score) if poses else EMPTY_POSE


def load_person_reid(
    model_path: str | os.PathLike[str] | None = None, device: str = "cuda", **kwargs: Any
) -> PersonReID:
    """Create a :class:`PersonReID` and :meth:`~PersonReID.load_model` it (the seed's factory)."""
    model = PersonReID(model_path, device, **kwargs)
    model.load_model()
    return model


def load_pose_estimator(
    model_path: str | os.PathLike[str] | None = None, device: str = "cuda", **kwargs: Any
) -> PoseEstimator:
    """Create a :class:`PoseEstimator` and load it (the seed's factory)."""
    model = PoseEstimator(model_path, device, **kwargs)
    model.load_model()
    return model


def load_threat_detector(
    model_path: str | os.PathLike[str] | None = None, device: str = "cuda", **kwargs: Any
) -> ThreatDetector:
    """Create a :class:`ThreatDetector` and load it (the seed's factory)."""
    model = ThreatDetector(model_path, device, **kwargs)
    model.load_model()
    return model
