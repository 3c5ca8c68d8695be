"""The Triton layout ("server home") of one run, found through pytriton's ``utils.distribution``.

The nvidia-pytriton wheel ships ``tritonserver``, the Python backend and one stub per Python version, but not
where Triton looks for them. pytriton copies the tree into each run's workspace
(``Triton._prepare_triton_inference_server``); we link the six pieces instead, into the run's own folder, so
nothing is shared between runs that could go stale or race.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import sys
import sysconfig
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from enrichment_light.core.errors import ServerStartError

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


def prepare_server_home(root: str | Path | None = None, *, python_version: str | None = None) -> ServerHome:
    """Link the wheel's pieces into ``root`` (replacing what is there) and return the layout.

    Args:
        root: The home directory; a new temporary one when omitted.
        python_version: ``"X.Y"`` of the stub; defaults to the running interpreter's.

    Raises:
        ServerStartError: The wheel is missing, incomplete, or has no stub for that Python version.
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
    if missing := [f"{t} (for {r})" for r, t in links.items() if not t.exists()]:
        raise ServerStartError(f"the nvidia-pytriton wheel is incomplete: missing {', '.join(missing)}; reinstall it")
    bin_dir = Path(sys.executable).parent
    if version == running and not (bin_dir / "python3").exists():
        raise ServerStartError(
            f"the Python-backend stub finds its interpreter as 'python3' on PATH, but {bin_dir} has no "
            "python3; run from a virtual environment (python -m venv) or add a python3 link there"
        )
    home = Path(root) if root is not None else Path(tempfile.mkdtemp(prefix="enrichment-light-home-"))
    for rel, target in links.items():
        (home / rel).parent.mkdir(parents=True, exist_ok=True)
        (home / rel).unlink(missing_ok=True)
        (home / rel).symlink_to(target)
    try:
        pytriton_version = importlib.metadata.version("nvidia-pytriton")
        triton_version = _TRITON_VERSION_BY_PYTRITON.get(pytriton_version, f"pytriton{pytriton_version}")
    except importlib.metadata.PackageNotFoundError:
        triton_version = "unknown"
    libdir = sysconfig.get_config_var("LIBDIR")
    return ServerHome(home, triton_version, version, Path(libdir) if libdir else None, bin_dir)
