"""The one module that knows the layout of the package data (``enrichment_light/_resources``).

Everything the installed package reads at run time lives there and is read through
:mod:`importlib.resources`, never through a path relative to a source checkout::

    _resources/
      models/<model>.py        model.py of every Python-backend model (the repository builder copies them)
      gpu-profile.json         per-model GPU tuning for the tensorrt / onnx targets
      threat_taxonomy.json     class name -> threat type / severity table
      samples/bus.jpg, zidane.jpg   sample photos for ``enrichment-light serve --analyze``

In the git checkout, ``models/*.py`` and ``gpu-profile.json`` are symbolic links to
``model_repository/<model>/1/model.py`` and ``deploy/gpu-profile.json``, so each file has one copy
in git; building the wheel stores their contents.
"""

from __future__ import annotations

from importlib import resources
from importlib.abc import Traversable
from pathlib import Path

#: Sample photos shipped for ``serve --analyze`` (Ultralytics' assets, AGPL-3.0 like this project).
SAMPLE_IMAGES = ("bus.jpg", "zidane.jpg")


def root() -> Traversable:
    """The ``_resources`` folder of the installed package."""
    return resources.files("enrichment_light").joinpath("_resources")


def model_source(name: str) -> Traversable:
    """The ``model.py`` source of the Python-backend model `name`.

    Raises:
        FileNotFoundError: No Python-backend source ships for `name`.
    """
    source = root().joinpath("models", f"{name}.py")
    if not source.is_file():
        known = sorted(p.name[: -len(".py")] for p in root().joinpath("models").iterdir() if p.name.endswith(".py"))
        raise FileNotFoundError(
            f"no model.py ships for {name!r}; package data has {known} (a new Python-backend model needs a link "
            f"_resources/models/{name}.py -> model_repository/{name}/1/model.py)"
        )
    return source


def gpu_profile() -> Traversable:
    """The default GPU profile (``deploy/gpu-profile.json`` in the checkout)."""
    return root().joinpath("gpu-profile.json")


def threat_taxonomy() -> Traversable:
    """The default threat taxonomy table."""
    return root().joinpath("threat_taxonomy.json")


def sample_images() -> list[Path]:
    """File-system paths of the shipped sample photos (a wheel installs package data as plain files)."""
    folder = root().joinpath("samples")
    return [Path(str(folder.joinpath(name))) for name in SAMPLE_IMAGES if folder.joinpath(name).is_file()]
