"""The layout change: old import paths keep working and warn; serve finds the exporters by entry point."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys

import pytest

import enrichment_light
from enrichment_light import _compat


def _forget(name: str) -> None:
    """Drop `name` from the import cache and its parent, so the next import goes through the finder."""
    sys.modules.pop(name, None)
    parent, _, child = name.rpartition(".")
    if parent in sys.modules and child in vars(sys.modules[parent]):
        delattr(sys.modules[parent], child)


@pytest.mark.parametrize(("old", "new"), sorted(_compat.MOVED.items()))
def test_old_path_returns_the_moved_module_and_warns_when_imported(old: str, new: str) -> None:
    _forget(old)
    with pytest.warns(DeprecationWarning, match=rf"{old} is deprecated.*import {new} instead"):
        module = importlib.import_module(old)
    assert module is importlib.import_module(new)


def test_old_path_resolves_submodules_when_package_moved() -> None:
    _forget("enrichment_light.processing.detection")
    with pytest.warns(DeprecationWarning, match="enrichment_light.core.processing.detection"):
        from enrichment_light.processing.detection import Detections
    from enrichment_light.core.processing.detection import Detections as NewDetections

    assert Detections is NewDetections


def test_old_path_merges_successors_when_module_was_split() -> None:
    _forget("enrichment_light._core")
    with pytest.warns(DeprecationWarning, match="enrichment_light.client.plans"):
        old = importlib.import_module("enrichment_light._core")
    from enrichment_light.client.base import ClientBase
    from enrichment_light.client.manifest import load_manifest
    from enrichment_light.client.model_config import BackendInfo
    from enrichment_light.client.plans import ClientCore

    assert (old.ClientCore, old.ClientBase, old.BackendInfo, old.load_manifest) == (
        ClientCore,
        ClientBase,
        BackendInfo,
        load_manifest,
    )


def test_old_path_warns_when_used_as_attribute_without_import() -> None:
    _forget("enrichment_light.contract")
    with pytest.warns(DeprecationWarning, match="enrichment_light.core.contract"):
        contract = enrichment_light.contract
    assert contract.EMBEDDING_DIMENSION == 512


def test_new_name_is_none_when_module_did_not_move() -> None:
    assert _compat.new_name("enrichment_light.serving.pipeline") is None
    assert _compat.new_name("enrichment_light.core.contract") is None
    assert _compat.new_name("enrichment_light.processing.threat") == "enrichment_light.core.processing.threat"


def test_public_names_import_without_warning_when_using_documented_paths() -> None:
    code = (
        "import enrichment_light\n"
        "from enrichment_light import EnrichmentClient, AsyncEnrichmentClient, PersonGallery, PersonReID,"
        " PoseEstimator, ThreatDetector, BackendInfo, validate_model_path, EnrichmentResult\n"
        "from enrichment_light.client import EnrichmentClient as C, CLIENT_MODELS\n"
        "assert C is EnrichmentClient and CLIENT_MODELS\n"
    )
    done = subprocess.run(
        [sys.executable, "-W", "error::DeprecationWarning", "-c", code], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr


_NOT_YET_MIGRATED: set[str] = set()


def test_package_modules_import_without_deprecation_warning_when_imported_fresh() -> None:
    names = [
        m.name
        for m in pkgutil.walk_packages(enrichment_light.__path__, "enrichment_light.")
        if m.name not in _NOT_YET_MIGRATED
    ]
    code = "import importlib, sys\nfor n in sys.argv[1:]:\n    importlib.import_module(n)\n"
    done = subprocess.run(
        [sys.executable, "-W", "error::DeprecationWarning", "-c", code, *names],
        capture_output=True,
        text=True,
        check=False,
    )
    assert len(names) > 20
    assert done.returncode == 0, done.stderr


def test_build_cpu_repository_raises_one_line_error_when_no_builder_is_registered(monkeypatch, tmp_path):
    from enrichment_light import cli
    from enrichment_light.core.errors import EnrichmentError

    monkeypatch.setattr(cli.importlib.metadata, "entry_points", lambda **_kw: ())
    with pytest.raises(EnrichmentError, match=r"pip install 'enrichment-light\[export,serve\]'"):
        cli.build_cpu_repository(tmp_path / "repo", untrained=True)


def test_build_cpu_repository_finds_the_exporters_through_their_entry_point_when_installed():
    from importlib.metadata import entry_points

    from enrichment_export.cpu_repository import build_cpu_repository
    from enrichment_light.cli import REPOSITORY_BUILDERS

    (found,) = entry_points(group=REPOSITORY_BUILDERS, name="cpu")
    assert found.load() is build_cpu_repository
