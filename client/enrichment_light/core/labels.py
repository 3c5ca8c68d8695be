"""The label vocabularies of the outputs: pose classes and threat severities, with their wire order.

The ``POSE_CLASS`` and ``SEVERITY`` / ``MAX_SEVERITY`` int32 tensors index these tuples. Enums derive
from ``str``: ``pose_class == "standing"`` and ``severity.upper()`` behave like the seed's strings.
"""

from __future__ import annotations

import enum


class PoseClass(str, enum.Enum):
    """Rule-based posture classes."""

    STANDING = "standing"
    CROUCHING = "crouching"
    RUNNING = "running"
    REACHING_UP = "reaching_up"
    CRAWLING = "crawling"
    HIDING = "hiding"
    UNKNOWN = "unknown"

    def __str__(self) -> str:
        return self.value

    @property
    def is_suspicious(self) -> bool:
        """Whether this class is flagged as suspicious in a security context."""
        return self in SUSPICIOUS_POSES


SUSPICIOUS_POSES = frozenset({PoseClass.CROUCHING, PoseClass.CRAWLING, PoseClass.HIDING, PoseClass.REACHING_UP})
# Wire order of the POSE_CLASS int32 tensor.
POSE_CLASS_ORDER: tuple[PoseClass, ...] = tuple(PoseClass)


class Severity(str, enum.Enum):
    """Threat severity, ordered critical > high > medium > low > none."""

    NONE = "none"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    def __str__(self) -> str:
        return self.value

    @property
    def rank(self) -> int:
        """0 for none up to 4 for critical."""
        return SEVERITY_ORDER.index(self)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Severity):
            return NotImplemented
        return self.rank < other.rank

    def __le__(self, other: object) -> bool:
        if not isinstance(other, Severity):
            return NotImplemented
        return self.rank <= other.rank

    def __gt__(self, other: object) -> bool:
        if not isinstance(other, Severity):
            return NotImplemented
        return self.rank > other.rank

    def __ge__(self, other: object) -> bool:
        if not isinstance(other, Severity):
            return NotImplemented
        return self.rank >= other.rank


# Wire order of the SEVERITY / MAX_SEVERITY int32 tensors (index == rank).
SEVERITY_ORDER: tuple[Severity, ...] = (
    Severity.NONE,
    Severity.LOW,
    Severity.MEDIUM,
    Severity.HIGH,
    Severity.CRITICAL,
)


__all__ = ["POSE_CLASS_ORDER", "SEVERITY_ORDER", "SUSPICIOUS_POSES", "PoseClass", "Severity"]
