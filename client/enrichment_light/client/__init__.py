"""The client side: results, transports, the sync and asyncio clients, facades, gallery, annotation.

Names load on first use, so importing :mod:`enrichment_light.client.results` (which the package's
top level does) does not pull in tritonclient.
"""

from __future__ import annotations

from enrichment_light._compat import lazy_exports

_LAZY = {
    "EnrichmentClient": "enrichment_light.client.sync",
    "CLIENT_MODELS": "enrichment_light.client.sync",
    "AsyncEnrichmentClient": "enrichment_light.client.aio",
    "BackendInfo": "enrichment_light.client.model_config",
    "PersonGallery": "enrichment_light.client.gallery",
    "GalleryMatch": "enrichment_light.client.gallery",
    "PersonReID": "enrichment_light.client.facades",
    "PoseEstimator": "enrichment_light.client.facades",
    "ThreatDetector": "enrichment_light.client.facades",
    "load_person_reid": "enrichment_light.client.facades",
    "load_pose_estimator": "enrichment_light.client.facades",
    "load_threat_detector": "enrichment_light.client.facades",
}


__getattr__ = lazy_exports(__name__, _LAZY)


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = [  # noqa: RUF022  (the order of _LAZY)
    "EnrichmentClient",
    "CLIENT_MODELS",
    "AsyncEnrichmentClient",
    "BackendInfo",
    "PersonGallery",
    "GalleryMatch",
    "PersonReID",
    "PoseEstimator",
    "ThreatDetector",
    "load_person_reid",
    "load_pose_estimator",
    "load_threat_detector",
]
