"""The one boolean vocabulary: config parameters, the facades' and the TensorRT environment variables.

Accepted words, in any case and with surrounding blanks: ``1/true/yes/on`` and ``0/false/no/off``.

**An empty value means "not set"**: ``FOO=`` (or only blanks) gives the caller's default, exactly as
if ``FOO`` were absent. Compose files and Kubernetes manifests write ``FOO: ""`` or ``FOO=${FOO:-}``
to leave a variable unset, and a default that silently flips to false there (``*_TENSORRT_FP16``
defaults to true) would be a surprise. Any other word is an error naming where it came from, never
a silent false.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from enrichment_light.core.errors import InvalidInputError

TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})
WORDS_HELP = "1/0, true/false, yes/no, on/off"


class InvalidFlagError(InvalidInputError):
    """A boolean setting whose value is not one of the boolean words."""


def parse_flag(value: str | None, *, default: bool, source: str) -> bool:
    """Read one boolean word; None, empty or blank gives `default`.

    Args:
        value: The raw text (None when the setting is absent).
        default: The result for an absent or empty value.
        source: What the value is, for the error message, e.g. ``"config parameter 'x'"``.

    Raises:
        InvalidFlagError: Any other word (a ValueError; the message names `source` and the value).
    """
    if value is None or value.strip() == "":
        return bool(default)
    word = value.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise InvalidFlagError(f"{source} is not a boolean (use {WORDS_HELP}): {value!r}")


def env_flag(names: Sequence[str], *, default: bool, environ: Mapping[str, str] | None = None) -> bool:
    """A boolean from the first of several spellings of one environment variable.

    Empty variables count as unset. When two spellings are set to different values the call fails
    rather than picking one.

    Args:
        names: Equivalent variable names, e.g. ``("THREAT_USE_TENSORRT", "THREAT_DETECTOR_USE_TENSORRT")``.
        default: The result when none of them is set (or all are empty).
        environ: The environment to read (``os.environ`` by default).

    Raises:
        InvalidFlagError: A value that is not a boolean word, or two spellings that disagree.
    """
    env = os.environ if environ is None else environ
    found = {}
    for name in names:
        raw = env.get(name)
        if raw is not None and raw.strip() != "":
            found[name] = parse_flag(raw, default=default, source=f"environment variable {name}")
    if len(set(found.values())) > 1:
        raise InvalidFlagError(f"conflicting environment variables: {', '.join(f'{n}={env[n]!r}' for n in found)}")
    return next(iter(found.values())) if found else bool(default)
