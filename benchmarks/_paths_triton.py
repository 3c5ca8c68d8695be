"""Path (c): our Triton pipeline on the embedded server, through the client library.

- ``grpc`` / ``http`` (``transport="bytes"``): the encoded image goes to the ``pose`` and ``threat``
  ensembles (decode + letterbox + model + postprocess on the server); crops are resized on the
  client and sent to ``osnet_x0_25``.
- ``shm`` (gRPC control, ``transport="shm"``): the client decodes and letterboxes, passes the uint8
  tensor and its ``LETTERBOX_INFO`` through system shared memory to the ``pose_tensor`` /
  ``threat_tensor`` ensembles (detector + the same postprocessor as the bytes path); crops go
  through shared memory too.

``per_frame`` paths make one call per frame of the pose+threat workload: ``analyze_frame`` (pose and
threat requests in flight at once) or ``enrich`` (one server call; it also embeds every person found).
"""

from __future__ import annotations

import numpy as np

from enrichment_light.client import EnrichmentClient


class TritonPath:
    """One client (protocol + transport) against the embedded server."""

    def __init__(self, url: str, *, protocol: str, transport: str = "bytes", workers: int = 8, tag: str = "",
                 workloads: tuple[str, ...] | None = None, per_frame: str = "") -> None:  # fmt: skip
        self.name = f"c_triton_{protocol}" if transport == "bytes" else f"c_triton_{transport}"
        self.label = f"(c) Triton {protocol.upper()}" if transport == "bytes" else "(c) Triton gRPC+shm"
        if tag:
            self.name, self.label = f"{self.name}_{tag}", f"{self.label}, {tag}"
        if workloads is not None:
            self.workloads = workloads
        # per_frame: one call per frame instead of estimate_poses then detect_threats
        if per_frame not in ("", "analyze_frame", "enrich"):
            raise ValueError(f"per_frame must be '', 'analyze_frame' or 'enrich', got {per_frame!r}")
        self.per_frame = per_frame
        self.client = EnrichmentClient(url, protocol=protocol, transport=transport, timeout_s=60.0,
                                       retries=0, max_workers=workers)  # fmt: skip

    def pose(self, data: bytes) -> int:
        return len(self.client.estimate_poses(data))

    def threat(self, data: bytes) -> int:
        return len(self.client.detect_threats(data).threats)

    def frame(self, data: bytes) -> int:
        if self.per_frame == "enrich":
            result = self.client.enrich(data)
            return len(result.persons) + len(result.threats.threats)
        result = self.client.analyze_frame(data)
        return len(result.poses) + len(result.threats.threats)

    def reid(self, crops: list[np.ndarray]) -> int:
        return len(self.client.extract_embeddings_from_crops(crops))

    def close(self) -> None:
        self.client.close()
