"""Old import paths, kept for one release: ``enrichment_light.contract`` -> ``enrichment_light.core.contract``.

One meta-path finder serves every moved module. Importing an old path emits a
:class:`DeprecationWarning` naming the new one and binds the old name to the *same* module object,
so ``isinstance`` checks and monkeypatching through either path agree. ``_core``, which was split
in four, is served as a read-only merge of its successors.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
import warnings
from collections.abc import Callable

#: Old module (or package) -> new module. A package alias also covers its submodules.
MOVED: dict[str, str] = {
    "enrichment_light.contract": "enrichment_light.core.contract",
    "enrichment_light.errors": "enrichment_light.core.errors",
    "enrichment_light.paths": "enrichment_light.core.paths",
    "enrichment_light._files": "enrichment_light.core.files",
    "enrichment_light.processing": "enrichment_light.core.processing",
    "enrichment_light.results": "enrichment_light.client.results",
    "enrichment_light._inputs": "enrichment_light.client.inputs",
    "enrichment_light._transport": "enrichment_light.client.transport",
    "enrichment_light.aio": "enrichment_light.client.aio",
    "enrichment_light.facades": "enrichment_light.client.facades",
    "enrichment_light.gallery": "enrichment_light.client.gallery",
    "enrichment_light.annotate": "enrichment_light.client.annotate",
    "enrichment_light.serving.params": "enrichment_light.core.params",
    "enrichment_light.server": "enrichment_light.devserver",
}

#: Old modules whose contents now live in several modules.
SPLIT: dict[str, tuple[str, ...]] = {
    "enrichment_light._core": (
        "enrichment_light.client.plans",
        "enrichment_light.client.decoding",
        "enrichment_light.client.model_config",
        "enrichment_light.client.manifest",
        "enrichment_light.client.base",
    ),
}


def new_name(old: str) -> str | None:
    """The module that replaces `old` (a moved module or a submodule of a moved package), or None."""
    if old in MOVED:
        return MOVED[old]
    head = old.rpartition(".")[0]
    while head:
        if head in MOVED:
            return f"{MOVED[head]}.{old[len(head) + 1 :]}"
        head = head.rpartition(".")[0]
    return None


def _warn(old: str, new: str) -> None:
    warnings.warn(
        f"{old} is deprecated and will be removed in the next release; import {new} instead",
        DeprecationWarning,
        stacklevel=3,
    )


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, targets: tuple[str, ...], *, merged: bool) -> None:
        self._targets = targets
        self._merged = merged

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return None  # a placeholder; exec_module swaps in the real module

    def exec_module(self, module: types.ModuleType) -> None:
        old = module.__name__
        _warn(old, " / ".join(self._targets))
        if not self._merged:
            sys.modules[old] = importlib.import_module(self._targets[0])
            return
        for target in self._targets:
            source = importlib.import_module(target)
            module.__dict__.update({k: v for k, v in vars(source).items() if not k.startswith("__")})


class _AliasFinder(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: object = None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname in SPLIT:
            return importlib.machinery.ModuleSpec(fullname, _AliasLoader(SPLIT[fullname], merged=True))
        new = new_name(fullname)
        if new is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader((new,), merged=False))


def lazy_exports(package: str, table: dict[str, str]) -> Callable[[str], object]:
    """A module ``__getattr__`` that imports ``table[name]`` on first use and caches the value.

    Old module paths of the package (``enrichment_light.contract``) resolve through the finder.
    """
    namespace = sys.modules[package].__dict__

    def __getattr__(name: str) -> object:  # noqa: N807  (the module-level hook's name)
        if package == "enrichment_light" and is_old_path(name):
            return importlib.import_module(f"{package}.{name}")
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    return __getattr__


def install() -> None:
    """Put the alias finder first on ``sys.meta_path`` (once)."""
    if not any(isinstance(f, _AliasFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _AliasFinder())


def is_old_path(name: str) -> bool:
    """Whether ``enrichment_light.<name>`` is an old, aliased module path."""
    full = f"enrichment_light.{name}"
    return full in MOVED or full in SPLIT
