"""Ultralytics' NMS as a test oracle, with torchvision's stable tie order.

Without torchvision, Ultralytics falls back to ``TorchNMS.nms``, whose unstable sort orders equal
scores arbitrarily; ``torchvision.ops.nms`` (used by a normal install) sorts stably, which is the
tie rule we implement. Random-init heads give many exactly equal scores, so every oracle patches
that one call to ``stable=True`` (asserting the source line still exists).
"""

from __future__ import annotations

import contextlib
import inspect
import textwrap
from collections.abc import Iterator

_SORT_CALL = "scores.argsort(0, descending=True)"


def stable_nms_function():
    """``(original TorchNMS.nms, the same function with a stable sort)``."""
    from ultralytics.utils import nms as unms

    original = unms.TorchNMS.nms
    source = textwrap.dedent(inspect.getsource(original))
    assert source.count(_SORT_CALL) == 1, "Ultralytics changed TorchNMS.nms; revisit the tie-order oracle"
    source = source.replace(_SORT_CALL, "scores.argsort(stable=True, dim=0, descending=True)")
    source = source.replace("@staticmethod\n", "")
    namespace = dict(vars(unms))
    exec(source, namespace)  # the same function, with a stable sort (torchvision's tie order)
    return original, namespace["nms"]


@contextlib.contextmanager
def stable_nms() -> Iterator[None]:
    """Patch Ultralytics' fallback NMS to sort equal scores stably while the block runs."""
    from ultralytics.utils import nms as unms

    original, stable = stable_nms_function()
    unms.TorchNMS.nms = staticmethod(stable)
    try:
        yield
    finally:
        unms.TorchNMS.nms = original
