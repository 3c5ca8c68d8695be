"""Threat taxonomy: map a detector's class *names* to threat types and severities, vectorised.

The table is a JSON data file (``enrichment_light/data/threat_taxonomy.json`` by default) that
can be replaced without code changes::

    {
      "default_severity": "low",
      "threats": {"critical": ["gun", ...], "high": ["knife", ...], "medium": [...], "low": []},
      "ignore": ["person", "bicycle", ...]
    }

- Names are compared case-insensitively, with ``_``, ``-`` and runs of spaces treated alike, so
  ``Baseball_Bat`` matches ``baseball bat``. The threat type is the name as the table spells it.
- ``ignore`` lists names that are never threats. The default lists every COCO class except knife
  (43) and baseball bat (34), so stock COCO YOLOv8n works as a threat detector.
- A model class name that is neither mapped nor ignored is reported as a threat of
  ``default_severity``, and :meth:`ThreatTaxonomy.resolve` logs a warning (at model load).
  ``default_severity: "none"`` ignores such names instead.
- Classes are never mapped by id: a custom model's ids mean nothing to the table.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from enrichment_light.core import package_data
from enrichment_light.core.contract import (
    BOXES,
    CLASS_IDS,
    MAX_DETECTIONS,
    MAX_SEVERITY,
    NUM_DETECTIONS,
    SCORES,
    SEVERITY,
    THREAT_TYPE,
)
from enrichment_light.core.errors import EnrichmentError
from enrichment_light.core.labels import SEVERITY_ORDER, Severity
from enrichment_light.core.processing.detection import Detections
from enrichment_light.core.validators import object_array

logger = logging.getLogger(__name__)

TAXONOMY_ENV = "ENRICHMENT_THREAT_TAXONOMY"
_PACKAGED = "threat_taxonomy.json"
_TOP_LEVEL_KEYS = frozenset({"description", "default_severity", "threats", "ignore"})
_TABLE_SEVERITIES = (Severity.LOW, Severity.MEDIUM, Severity.HIGH, Severity.CRITICAL)


class ThreatTaxonomyError(EnrichmentError, ValueError):
    """A threat taxonomy file that cannot be used; the message names the file and the problem."""


def normalize_name(name: str) -> str:
    """Comparison key of a class name: casefolded, with ``_``, ``-`` and spaces collapsed to one space."""
    return re.sub(r"[\s_\-]+", " ", str(name).casefold()).strip()


class DetectionsLike(Protocol):
    """Anything with supervision-style per-field arrays (:class:`Detections`)."""

    xyxy: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray


@dataclass(frozen=True)
class ThreatMapping:
    """A taxonomy resolved against one model's class names, as arrays indexed by class id.

    Attributes:
        class_names: The model's class names, by id.
        is_threat: ``bool (C,)``.
        threat_type: ``object (C,)`` str; ``""`` for non-threats.
        severity: ``int32 (C,)`` rank in ``labels.SEVERITY_ORDER``; 0 (none) for non-threats.
        unmapped: Names neither mapped nor ignored (reported with the default severity).
    """

    class_names: tuple[str, ...]
    is_threat: np.ndarray
    threat_type: np.ndarray
    severity: np.ndarray
    unmapped: tuple[str, ...]


@dataclass(frozen=True)
class ThreatTaxonomy:
    """The name -> (threat type, severity) table.

    Attributes:
        threats: Normalised name -> (threat type, severity).
        ignore: Normalised names that are never threats.
        default_severity: Severity of names that are neither mapped nor ignored (``none``
            ignores them).
        source: Where the table came from, for messages.
    """

    threats: Mapping[str, tuple[str, Severity]]
    ignore: frozenset[str]
    default_severity: Severity = Severity.LOW
    source: str = "<dict>"

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None) -> ThreatTaxonomy:
        """Load a taxonomy file.

        Args:
            path: The JSON file. Defaults to ``$ENRICHMENT_THREAT_TAXONOMY``, else the packaged
                default table.

        Returns:
            The validated taxonomy.

        Raises:
            ThreatTaxonomyError: The file is missing, is not valid JSON, or its content is invalid.
        """
        if path is None:
            path = os.environ.get(TAXONOMY_ENV) or None
        if path is None:
            text = package_data.threat_taxonomy().read_text(encoding="utf-8")
            source = f"<packaged {_PACKAGED}>"
        else:
            source = os.fspath(path)
            try:
                text = Path(source).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as err:
                raise ThreatTaxonomyError(f"threat taxonomy {source!r}: cannot read it: {err}") from err
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ThreatTaxonomyError(f"threat taxonomy {source!r}: invalid JSON: {err}") from err
        return cls.from_dict(data, source=source)

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "<dict>") -> ThreatTaxonomy:
        """Build and validate a taxonomy from its JSON structure.

        Args:
            data: The parsed JSON object.
            source: Where it came from, named in error messages.

        Returns:
            The validated taxonomy.

        Raises:
            ThreatTaxonomyError: Unknown keys or severities, non-string or empty names, or a name
                listed twice (after normalisation).
        """

        def fail(problem: str) -> ThreatTaxonomyError:
            return ThreatTaxonomyError(f"threat taxonomy {source!r}: {problem}")

        if not isinstance(data, dict):
            raise fail(f"top level must be a JSON object, got {type(data).__name__}")
        unknown = sorted(set(data) - _TOP_LEVEL_KEYS)
        if unknown:
            raise fail(f"unknown keys {unknown}; allowed: {sorted(_TOP_LEVEL_KEYS)}")
        raw_default = data.get("default_severity", "low")
        try:
            default = Severity(raw_default)
        except ValueError:
            allowed = [s.value for s in SEVERITY_ORDER]
            raise fail(f"unknown default_severity {raw_default!r}; allowed: {allowed}") from None
        table = data.get("threats", {})
        if not isinstance(table, dict):
            raise fail(f"'threats' must be an object of severity -> list of names, got {type(table).__name__}")

        seen: dict[str, str] = {}

        def names_of(value: Any, where: str) -> list[str]:
            if not isinstance(value, list):
                raise fail(f"{where} must be a list of names, got {type(value).__name__}")
            out = []
            for name in value:
                if not isinstance(name, str) or not normalize_name(name):
                    raise fail(f"{where} holds an invalid name {name!r}: names must be non-empty strings")
                key = normalize_name(name)
                if key in seen:
                    raise fail(f"duplicate name {name!r} in {where} (already listed in {seen[key]})")
                seen[key] = where
                out.append(name)
            return out

        threats: dict[str, tuple[str, Severity]] = {}
        for sev_name, names in table.items():
            allowed = [s.value for s in _TABLE_SEVERITIES]
            if sev_name not in allowed:
                raise fail(f"unknown severity {sev_name!r} in 'threats'; allowed: {allowed}")
            for name in names_of(names, f"threats.{sev_name}"):
                threats[normalize_name(name)] = (name, Severity(sev_name))
        ignore = frozenset(normalize_name(n) for n in names_of(data.get("ignore", []), "ignore"))
        return cls(threats=threats, ignore=ignore, default_severity=default, source=source)

    def lookup(self, name: str) -> tuple[str, Severity]:
        """Threat type and severity of one class name; ``("", Severity.NONE)`` if not a threat."""
        key = normalize_name(name)
        if key in self.threats:
            return self.threats[key]
        if key in self.ignore or self.default_severity is Severity.NONE:
            return "", Severity.NONE
        return key, self.default_severity

    def resolve(self, class_names: Sequence[str] | Mapping[int, str]) -> ThreatMapping:
        """Resolve the table against a model's class names (call once, at model load).

        Args:
            class_names: Names by class id, as a list or as Ultralytics' ``{id: name}`` dict
                (ids must be ``0..C-1``).

        Returns:
            Per-class-id arrays. Unmapped names are logged as a warning.

        Raises:
            ValueError: A dict of names whose ids are not ``0..C-1``.
        """
        if isinstance(class_names, Mapping):
            ids = sorted(class_names)
            if ids != list(range(len(ids))):
                raise ValueError(f"class name ids must be 0..{len(ids) - 1}, got {ids}")
            names = tuple(str(class_names[i]) for i in ids)
        else:
            names = tuple(str(n) for n in class_names)
        looked_up = [self.lookup(n) for n in names]
        severity = np.array([s.rank for _, s in looked_up], dtype=np.int32)
        unmapped = tuple(
            n for n in names if normalize_name(n) not in self.threats and normalize_name(n) not in self.ignore
        )
        if unmapped:
            action = (
                "they are ignored (default_severity 'none')"
                if self.default_severity is Severity.NONE
                else f"they are reported as threats of severity {self.default_severity.value!r}"
            )
            logger.warning("threat taxonomy %s does not list class names %s; %s", self.source, list(unmapped), action)
        threat_type = np.empty(len(names), dtype=object)
        threat_type[:] = [t for t, _ in looked_up]
        return ThreatMapping(
            class_names=names,
            is_threat=severity > 0,
            threat_type=threat_type,
            severity=severity,
            unmapped=unmapped,
        )


#: ``data`` keys of threat detections.
THREAT_FIELDS = ("threat_type", "severity", "class_name")


def threat_detections(
    *,
    xyxy: np.ndarray,
    scores: np.ndarray,
    class_ids: np.ndarray,
    threat_type: np.ndarray,
    severity: np.ndarray,
    class_name: np.ndarray,
) -> Detections:
    """Threats of one image as :class:`~enrichment_light.core.processing.detection.Detections`.

    Data keys: ``threat_type`` (str), ``severity`` (rank in ``labels.SEVERITY_ORDER``, 1..4) and
    ``class_name`` (the model's own class name, ``""`` when unknown).
    """
    return Detections(
        xyxy, scores, class_ids, {"threat_type": threat_type, "severity": severity, "class_name": class_name}
    )


def max_severity(threats: Detections) -> int:
    """Highest severity rank of `threats`; 0 (none) when there is no threat."""
    return int(threats.severity.max()) if len(threats) else 0


def pad_threats(threats: Detections, max_det: int = MAX_DETECTIONS) -> dict[str, np.ndarray]:
    """The threat postprocess output tensors of one request (no batch dimension).

    Arrays are padded to ``max_det`` (boxes/scores 0, class ids -1, threat type ``b""``,
    severity 0). Beyond ``max_det`` threats, the highest-scoring are kept.

    Args:
        threats: The threats of one image.
        max_det: Padded length.

    Returns:
        Tensor name -> array, per the ``threat_postprocess`` contract.
    """
    keep = np.argsort(-threats.scores, kind="stable")[:max_det] if len(threats) > max_det else np.arange(len(threats))
    n = len(keep)
    boxes = np.zeros((max_det, 4), np.float32)
    scores = np.zeros(max_det, np.float32)
    class_ids = np.full(max_det, -1, np.int32)
    threat_type = object_array([b""] * max_det)
    severity = np.zeros(max_det, np.int32)
    boxes[:n] = threats.xyxy[keep]
    scores[:n] = threats.scores[keep]
    class_ids[:n] = threats.class_ids[keep]
    threat_type[:n] = [str(t).encode("utf-8") for t in threats.threat_type[keep]]
    severity[:n] = threats.severity[keep]
    return {
        NUM_DETECTIONS: np.array([n], np.int32),
        BOXES: boxes,
        SCORES: scores,
        CLASS_IDS: class_ids,
        THREAT_TYPE: threat_type,
        SEVERITY: severity,
        MAX_SEVERITY: np.array([int(severity.max(initial=0))], np.int32),
    }


def unpad_threats(tensors: Mapping[str, np.ndarray], *, class_names: Sequence[str] | None = None) -> Detections:
    """Inverse of :func:`pad_threats` for one request (no batch dimension).

    Args:
        tensors: Tensor name -> array as returned by the threat postprocess.
        class_names: The model's class names by id, to fill ``class_name``.

    Returns:
        The first ``NUM_DETECTIONS`` threats.

    Raises:
        ValueError: ``NUM_DETECTIONS`` is outside ``[0, padded length]``.
    """
    n = int(np.asarray(tensors[NUM_DETECTIONS]).reshape(-1)[0])
    scores = np.asarray(tensors[SCORES], np.float32).reshape(-1)
    if not 0 <= n <= len(scores):
        raise ValueError(f"{NUM_DETECTIONS} must be in [0, {len(scores)}], got {n}")
    class_ids = np.asarray(tensors[CLASS_IDS], np.int32).reshape(-1)[:n]
    types = [t.decode("utf-8") if isinstance(t, bytes) else str(t) for t in np.asarray(tensors[THREAT_TYPE])[:n]]
    names = [class_names[c] if class_names is not None and 0 <= c < len(class_names) else "" for c in class_ids]
    return threat_detections(
        xyxy=np.asarray(tensors[BOXES], np.float32).reshape(-1, 4)[:n],
        scores=scores[:n],
        class_ids=class_ids,
        threat_type=object_array(types),
        severity=np.asarray(tensors[SEVERITY], np.int32).reshape(-1)[:n],
        class_name=object_array(names),
    )


def select_threats(detections: DetectionsLike, mapping: ThreatMapping) -> Detections:
    """Keep the detections whose class is a threat, and attach threat type and severity.

    Args:
        detections: Any object with ``xyxy (N, 4)``, ``scores (N,)`` and ``class_ids (N,)``.
        mapping: The taxonomy resolved against the detector's class names.

    Returns:
        The threats, in the detections' order.

    Raises:
        ValueError: A class id outside the model's classes, or mismatched array lengths.
    """
    xyxy = np.asarray(detections.xyxy, np.float32).reshape(-1, 4)
    scores = np.asarray(detections.scores, np.float32).reshape(-1)
    class_ids = np.asarray(detections.class_ids).reshape(-1).astype(np.int64)
    if not len(xyxy) == len(scores) == len(class_ids):
        raise ValueError(
            f"detections arrays differ in length: xyxy {len(xyxy)}, scores {len(scores)}, class_ids {len(class_ids)}"
        )
    n_classes = len(mapping.class_names)
    if class_ids.size and (class_ids.min() < 0 or class_ids.max() >= n_classes):
        raise ValueError(f"class ids must be in [0, {n_classes}), got {class_ids.min()}..{class_ids.max()}")
    keep = mapping.is_threat[class_ids]
    ids = class_ids[keep]
    return threat_detections(
        xyxy=xyxy[keep],
        scores=scores[keep],
        class_ids=ids.astype(np.int32),
        threat_type=mapping.threat_type[ids],
        severity=mapping.severity[ids],
        class_name=object_array(mapping.class_names)[ids],
    )
