"""The Triton layout ("server home") assembled from the nvidia-pytriton wheel with pytriton's own helpers.

The wheel ships ``tritonserver``, the Python backend and one stub per Python version, but not where Triton
looks for them. :func:`prepare_server_home` links them into a private directory under the user cache (the
wheel is never modified); pytriton's ``utils.distribution`` says where each piece lies.
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
STUB_NAME = "triton_python_backend_stub"
_TRITON_VERSION_BY_PYTRITON = {"0.7.0": "2.51.0"}


@dataclass(frozen=True)
class ServerHome:
    """A ready-to-run Triton layout.

    Attributes:
        root: The home directory.
        triton_version: The server version, e.g. ``"2.51.0"``.
        python_version: ``"X.Y"`` of the Python-backend stub.
        tritonserver: The ``tritonserver`` executable.
        backend_directory: The value for ``--backend-directory``.
        lib_dir: The bundled shared libraries.
        python_libdir: The interpreter's ``LIBDIR`` (``libpython3.X.so`` for the stub).
        python_bin_dir: Put first on ``PATH``: its ``python3`` is the stub's interpreter.
    """

    root: Path
    triton_version: str
    python_version: str
    tritonserver: Path
    backend_directory: Path
    lib_dir: Path
    python_libdir: Path | None
    python_bin_dir: Path

    def environment(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment for ``tritonserver`` and its stubs.

        Returns ``base`` (or ``os.environ``) with the libraries prefixed to ``LD_LIBRARY_PATH`` and the venv's
        ``bin`` to ``PATH``.
        """
        env = dict(os.environ if base is None else base)
        libs = [str(self.lib_dir)] + ([str(self.python_libdir)] if self.python_libdir else [])
        env["LD_LIBRARY_PATH"] = os.pathsep.join([*libs, *filter(None, [env.get("LD_LIBRARY_PATH")])])
        env["PATH"] = os.pathsep.join([str(self.python_bin_dir), *filter(None, [env.get("PATH")])])
        return env


def _default_cache_dir() -> Path:
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV])
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "enrichment-light"


def _home_is_valid(root: Path, links: Mapping[str, Path]) -> bool:
    return all(
        (root / rel).is_symlink() and Path(os.readlink(root / rel)) == target and (root / rel).exists()
        for rel, target in links.items()
    )


def prepare_server_home(*, cache_dir: str | Path | None = None, python_version: str | None = None) -> ServerHome:
    """Assemble (once, atomically) and return the Triton layout for this interpreter.

    Args:
        cache_dir: Parent directory; defaults to ``$ENRICHMENT_LIGHT_CACHE_DIR``, else
            ``$XDG_CACHE_HOME/enrichment-light`` or ``~/.cache/enrichment-light``.
        python_version: ``"X.Y"`` of the stub; defaults to the running interpreter's.

    Returns:
        The :class:`ServerHome`; re-linked when a link is missing or points elsewhere.

    Raises:
        ServerStartError: The wheel is missing or has no stub for that Python version.
    """
    if importlib.util.find_spec("pytriton") is None:
        raise ServerStartError(
            "the embedded Triton server needs the nvidia-pytriton wheel: pip install 'enrichment-light[serve]'"
        )
    from pytriton.utils import distribution

    wheel = distribution.get_root_module_path() / "tritonserver"
    version = python_version or f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = distribution.get_stub_path(version)
    if not stub.is_file():
        stubs = wheel / "python_backend_stubs"
        available = sorted(p.name for p in stubs.iterdir() if (p / STUB_NAME).is_file()) if stubs.is_dir() else []
        raise ServerStartError(
            f"nvidia-pytriton has no Python-backend stub for Python {version} (looked for {stub}); "
            f"available: {', '.join(available) or 'none'}. Use one of those Python versions for the venv."
        )
    backend = wheel / "backends" / "python"
    links = {
        "bin/tritonserver": wheel / "bin" / "tritonserver",
        "lib": distribution.get_libs_path(),
        "backends/python/libtriton_python.so": backend / "libtriton_python.so",
        "backends/python/triton_python_backend_utils.py": backend / "triton_python_backend_utils.py",
        f"backends/python/{STUB_NAME}": stub,
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
    digest = hashlib.sha256(str(wheel.resolve()).encode()).hexdigest()[:8]
    parent = Path(cache_dir) if cache_dir is not None else _default_cache_dir()
    root = parent / f"tritonserver-{triton_version}-py{version}-{digest}"
    if not _home_is_valid(root, links):
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
            if not _home_is_valid(root, links):
                raise ServerStartError(f"could not assemble the Triton server home at {root}") from None
    bin_dir = Path(sys.executable).parent
    if version == f"{sys.version_info.major}.{sys.version_info.minor}" and not (bin_dir / "python3").exists():
        raise ServerStartError(
            f"the Python-backend stub finds its interpreter as 'python3' on PATH, but {bin_dir} has no "
            "python3; run from a virtual environment (python -m venv) or add a python3 link there"
        )
    libdir = sysconfig.get_config_var("LIBDIR")
    return ServerHome(
        root=root,
        triton_version=triton_version,
        python_version=version,
        tritonserver=root / "bin" / "tritonserver",
        backend_directory=root / "backends",
        lib_dir=root / "lib",
        python_libdir=Path(libdir) if libdir else None,
        python_bin_dir=bin_dir,
    )
