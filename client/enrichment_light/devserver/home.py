"""The Triton layout ("server home"): the nvidia-pytriton wheel's pieces, found by pytriton's ``distribution``.

The wheel ships ``tritonserver``, the Python backend and one stub per Python version, but not where Triton
looks for them: they are symlinked into a private directory under the user cache (the wheel is not modified).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import importlib.util
import os
import shutil
import sys
import sysconfig
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from enrichment_light.core.errors import ServerStartError

CACHE_DIR_ENV = "ENRICHMENT_LIGHT_CACHE_DIR"
_TRITON_VERSION_BY_PYTRITON = {"0.7.0": "2.51.0"}


@dataclass(frozen=True)
class ServerHome:
    """A ready-to-run Triton layout.

    Attributes:
        root: The home directory (``bin/tritonserver``, ``backends/``, ``lib/``).
        triton_version: The server version, e.g. ``"2.51.0"``.
        python_version: ``"X.Y"`` of the Python-backend stub.
        python_libdir: The interpreter's ``LIBDIR`` (``libpython3.X.so`` for the stub).
        python_bin_dir: Put first on ``PATH``: its ``python3`` is the stub's interpreter.
    """

    root: Path
    triton_version: str
    python_version: str
    python_libdir: Path | None
    python_bin_dir: Path

    tritonserver = property(lambda self: self.root / "bin" / "tritonserver", doc="The executable.")
    backend_directory = property(lambda self: self.root / "backends", doc="For ``--backend-directory``.")
    lib_dir = property(lambda self: self.root / "lib", doc="The bundled shared libraries.")

    def environment(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """``base`` (or ``os.environ``) with the libraries first on ``LD_LIBRARY_PATH``, the venv's bin on ``PATH``."""
        env = dict(os.environ if base is None else base)
        libs = [self.lib_dir, *([self.python_libdir] if self.python_libdir else []), env.get("LD_LIBRARY_PATH")]
        env["LD_LIBRARY_PATH"] = os.pathsep.join(str(p) for p in libs if p)
        env["PATH"] = os.pathsep.join(str(p) for p in (self.python_bin_dir, env.get("PATH")) if p)
        return env


def _links_valid(root: Path, links: Mapping[str, Path]) -> bool:
    return all(
        (root / r).is_symlink() and Path(os.readlink(root / r)) == t and (root / r).exists() for r, t in links.items()
    )


def prepare_server_home(*, cache_dir: str | Path | None = None, python_version: str | None = None) -> ServerHome:
    """Assemble (once, atomically; again when a link is missing or stale) and return the Triton layout.

    Args:
        cache_dir: Parent directory; defaults to ``$ENRICHMENT_LIGHT_CACHE_DIR``, else
            ``$XDG_CACHE_HOME/enrichment-light`` or ``~/.cache/enrichment-light``.
        python_version: ``"X.Y"`` of the stub; defaults to the running interpreter's.

    Raises:
        ServerStartError: The wheel is missing or has no stub for that Python version.
    """
    if importlib.util.find_spec("pytriton") is None:
        raise ServerStartError(
            "the embedded Triton server needs the nvidia-pytriton wheel: pip install 'enrichment-light[serve]'"
        )
    from pytriton.utils import distribution

    wheel = distribution.get_root_module_path() / "tritonserver"
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    version = python_version or running
    if not (stub := distribution.get_stub_path(version)).is_file():
        stubs = wheel / "python_backend_stubs"
        available = sorted(p.name for p in stubs.iterdir() if (p / stub.name).is_file()) if stubs.is_dir() else []
        raise ServerStartError(
            f"nvidia-pytriton has no Python-backend stub for Python {version} (looked for {stub}); "
            f"available: {', '.join(available) or 'none'}. Use one of those Python versions for the venv."
        )
    backend = wheel / "backends" / "python"
    links = {
        "bin/tritonserver": wheel / "bin" / "tritonserver",
        "lib": distribution.get_libs_path(),
        **{f"backends/python/{n}": backend / n for n in ("libtriton_python.so", "triton_python_backend_utils.py")},
        f"backends/python/{stub.name}": stub,
    }
    for rel, target in links.items():
        if not target.exists():
            raise ServerStartError(f"the nvidia-pytriton wheel is incomplete: {target} is missing (needed for {rel})")
    try:
        triton_version = _TRITON_VERSION_BY_PYTRITON.get(
            v := importlib.metadata.version("nvidia-pytriton"), f"pytriton{v}"
        )
    except importlib.metadata.PackageNotFoundError:
        triton_version = "unknown"
    if cache_dir is None:
        xdg = os.environ.get("XDG_CACHE_HOME")
        cache_dir = os.environ.get(CACHE_DIR_ENV) or (Path(xdg) if xdg else Path.home() / ".cache") / "enrichment-light"
    parent = Path(cache_dir)
    digest = hashlib.sha256(str(wheel.resolve()).encode()).hexdigest()[:8]
    root = parent / f"tritonserver-{triton_version}-py{version}-{digest}"
    if not _links_valid(root, links):
        parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=parent))
        for rel, target in links.items():
            (staging / rel).parent.mkdir(parents=True, exist_ok=True)
            (staging / rel).symlink_to(target)
        if root.exists() or root.is_symlink():
            trash = Path(tempfile.mkdtemp(prefix=f".{root.name}.old.", dir=parent))
            with contextlib.suppress(OSError):
                root.rename(trash / "home")
            shutil.rmtree(trash, ignore_errors=True)
        try:
            staging.rename(root)
        except OSError:  # another process won the race; use its home if it is valid
            shutil.rmtree(staging, ignore_errors=True)
            if not _links_valid(root, links):
                raise ServerStartError(f"could not assemble the Triton server home at {root}") from None
    bin_dir = Path(sys.executable).parent
    if version == running and not (bin_dir / "python3").exists():
        raise ServerStartError(
            f"the Python-backend stub finds its interpreter as 'python3' on PATH, but {bin_dir} has no "
            "python3; run from a virtual environment (python -m venv) or add a python3 link there"
        )
    libdir = sysconfig.get_config_var("LIBDIR")
    return ServerHome(root, triton_version, version, Path(libdir) if libdir else None, bin_dir)
