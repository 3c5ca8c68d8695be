"""Package data: what the installed package reads at run time ships inside it (core.package_data)."""

from __future__ import annotations

import fnmatch
import hashlib
import importlib.util
import subprocess
from pathlib import Path

import pytest
import tomllib

from enrichment_export import repository as rb
from enrichment_light.core import contract as ct
from enrichment_light.core import package_data
from enrichment_light.core.processing.threat import ThreatTaxonomy

ROOT = Path(__file__).resolve().parents[2]
RESOURCES = ROOT / "client" / "enrichment_light" / "_resources"


def _tracked(folder: Path) -> list[str]:
    out = subprocess.run(["git", "ls-files", "--", str(folder)], capture_output=True, text=True, check=True, cwd=ROOT)
    return [str(Path(line).relative_to("client/enrichment_light")) for line in out.stdout.split()]


def test_package_data_patterns_cover_every_resource_file_when_the_wheel_is_built():
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    tracked = _tracked(RESOURCES)
    assert len(tracked) >= 12
    missing = [f for f in tracked if not any(fnmatch.fnmatch(f, p) for p in patterns["enrichment_light"])]
    assert missing == []


def test_model_source_ships_every_python_backend_model_when_asked_by_name():
    python_models = [n for n in ct.ALL_MODELS if ct.model_spec(n).kind != "ensemble"]
    for name in python_models:
        committed = ROOT / "model_repository" / name / "1" / "model.py"
        assert package_data.model_source(name).read_bytes() == committed.read_bytes(), name
    assert len(python_models) >= 8  # a new Python-backend model needs its link in _resources/models


def test_model_source_raises_naming_known_models_when_name_is_unknown():
    with pytest.raises(FileNotFoundError, match=r"no model\.py ships for 'reid'.*'enrich'"):
        package_data.model_source("reid")  # an ensemble on every target (pose is fused on cpu)


def test_gpu_profile_equals_the_deploy_copy_when_read_from_package_data():
    assert package_data.gpu_profile().read_bytes() == (ROOT / "deploy" / "gpu-profile.json").read_bytes()
    assert rb.load_gpu_profile(rb.DEFAULT_GPU_PROFILE) == rb.load_gpu_profile(ROOT / "deploy" / "gpu-profile.json")


def test_threat_taxonomy_loads_from_package_data_when_no_path_is_given(monkeypatch):
    monkeypatch.delenv("ENRICHMENT_THREAT_TAXONOMY", raising=False)
    packaged, from_file = ThreatTaxonomy.load(), ThreatTaxonomy.load(RESOURCES / "threat_taxonomy.json")
    assert packaged.source == "<packaged threat_taxonomy.json>"
    assert (packaged.threats, packaged.ignore, packaged.default_severity) == (
        from_file.threats,
        from_file.ignore,
        from_file.default_severity,
    )


def test_sample_images_are_ultralytics_assets_when_shipped():
    samples = package_data.sample_images()
    assert [p.name for p in samples] == ["bus.jpg", "zidane.jpg"]
    spec = importlib.util.find_spec("ultralytics")
    if spec is None:
        pytest.skip("ultralytics (the assets' origin) is not installed")
    assets = Path(next(iter(spec.submodule_search_locations))) / "assets"
    for path in samples:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        assert digest == hashlib.sha256((assets / path.name).read_bytes()).hexdigest(), path.name
