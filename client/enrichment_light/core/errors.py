"""The exception hierarchy of enrichment-light.

Everything raised on purpose by this package derives from :class:`EnrichmentError`. Errors about
bad input also derive from :class:`ValueError`, so code written against the seed's ``ValueError``
keeps working.
"""

from __future__ import annotations


class EnrichmentError(Exception):
    """Base class of every error raised by enrichment-light."""


class InvalidInputError(EnrichmentError, ValueError):
    """A request carried input that can never succeed (bad image, bad boxes, bad dtype...)."""


class InvalidImageError(InvalidInputError):
    """Image bytes that cannot be decoded: empty, truncated, corrupt, unknown format or too large."""


class InvalidModelPathError(EnrichmentError, ValueError):
    """A model path that is unsafe (traversal, NUL, outside the allowed roots) or unusable."""

    def __init__(self, path: object, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"invalid model path {path!r}: {reason}")


class ModelFileError(EnrichmentError):
    """A checkpoint, ONNX file or plan that cannot be used; the message says what to do."""


class ServerUnavailableError(EnrichmentError):
    """The Triton server cannot be reached (down, refusing connections, or not ready)."""


class ModelNotReadyError(EnrichmentError):
    """The server is up but the model is not loaded or not ready."""


class ModelRestartingError(ModelNotReadyError):
    """The model's Python-backend stub process died and the model is being (or must be) reloaded.

    Triton answers ``Stub process '<instance>' is not healthy.`` (INTERNAL) for every request to such a
    model. The embedded server's stub watchdog reloads it within a few seconds; the clients retry this
    error like ``ServerUnavailableError``. Without a watchdog, an operator must reload the model.
    """


class AccessDeniedError(EnrichmentError, PermissionError):
    """A restricted Triton API (model repository, shared memory) refused a call without the admin key."""


class InferenceTimeoutError(EnrichmentError, TimeoutError):
    """A request did not complete within its ``timeout_s``."""


class ServerStartError(EnrichmentError, RuntimeError):
    """The embedded Triton server could not be started; the message includes its log tail."""


class RuntimeMissingError(EnrichmentError, RuntimeError):
    """An optional runtime or hardware feature a configuration needs is absent (OpenVINO, native bf16)."""
