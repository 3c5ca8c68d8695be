"""When ``serve`` reuses its repository and when it rebuilds it (the exports stubbed: only the decision)."""

from __future__ import annotations

import json
import logging

import pytest

from enrichment_export import cpu_repository as cr
from enrichment_export.repository import MANIFEST_NAME


@pytest.fixture
def builds(monkeypatch):
    """Count the builds; a build writes the manifest as the real builder does."""
    calls: list[str] = []

    def fake_build(out_dir, *, target, artifacts, options, allowed_roots):
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / MANIFEST_NAME).write_text("{}")
        calls.append(target if options.osnet_precision == "fp32" else f"{target}+{options.osnet_precision}")

    monkeypatch.setattr(cr, "export_onnx", lambda model, source, path: path)
    monkeypatch.setattr(cr, "untrained_model", lambda model: model)
    monkeypatch.setattr(cr, "build_repository", fake_build)
    return calls


def test_serve_repository_is_reused_when_its_build_record_matches(builds, tmp_path):
    repo = tmp_path / "repository"
    cr.build_cpu_repository(repo, untrained=True, managed=True)
    cr.build_cpu_repository(repo, untrained=True, managed=True)
    assert builds == ["cpu"]
    assert json.loads((repo / cr.BUILD_KEY_NAME).read_text())["key"] == cr.build_key(untrained=True, weights={})


def test_serve_repository_is_rebuilt_when_an_older_builder_or_other_weights_made_it(builds, tmp_path, caplog):
    repo = tmp_path / "repository"
    cr.build_cpu_repository(repo, untrained=True, managed=True)
    (repo / cr.BUILD_KEY_NAME).write_text(json.dumps({"key": "built-by-an-older-version"}))
    with caplog.at_level(logging.WARNING, logger=cr.logger.name):
        cr.build_cpu_repository(repo, untrained=True, managed=False)
    assert builds == ["cpu", "cpu"]
    assert "rebuilding the repository" in caplog.text and "changed since it was built" in caplog.text
    weights = tmp_path / "pose.pt"
    weights.write_bytes(b"v1")
    assert cr.build_key(untrained=False, weights={"p": str(weights)}) != cr.build_key(untrained=True, weights={})
    before = cr.build_key(untrained=False, weights={"p": str(weights)})
    weights.write_bytes(b"v2 (retrained, same path)")
    assert cr.build_key(untrained=False, weights={"p": str(weights)}) != before


def test_serve_repository_without_record_is_rebuilt_only_when_serve_manages_the_folder(builds, tmp_path, caplog):
    repo = tmp_path / "repository"
    repo.mkdir()
    (repo / MANIFEST_NAME).write_text("{}")  # e.g. `enrichment-export build-repository --precision int8`
    cr.build_cpu_repository(repo, untrained=True, managed=False)
    assert builds == []  # the user's own build is served as it is
    with caplog.at_level(logging.WARNING, logger=cr.logger.name):
        cr.build_cpu_repository(repo, untrained=True, managed=True)
    assert builds == ["cpu"] and "no build record" in caplog.text
    cr.build_cpu_repository(repo, untrained=True, managed=True, rebuild=True)
    assert builds == ["cpu", "cpu"]


def test_serve_repository_is_rebuilt_when_reid_precision_changes(builds, tmp_path):
    repo = tmp_path / "repository"
    cr.build_cpu_repository(repo, untrained=True, managed=True)
    cr.build_cpu_repository(repo, untrained=True, managed=True, reid_precision="bf16")
    cr.build_cpu_repository(repo, untrained=True, managed=True, reid_precision="bf16")
    cr.build_cpu_repository(repo, untrained=True, managed=True)
    assert builds == ["cpu", "cpu+bf16", "cpu"]
    fp32 = cr.build_key(untrained=True, weights={})
    assert cr.build_key(untrained=True, weights={}, reid_precision="fp32") == fp32
    assert cr.build_key(untrained=True, weights={}, reid_precision="bf16") != fp32


def test_serve_cli_passes_reid_precision_to_the_builder(monkeypatch, tmp_path):
    from enrichment_light import cli

    seen = {}

    def builder(out_dir, **kw):
        seen.update(kw)
        raise SystemExit(0)  # stop before the server starts

    monkeypatch.setattr(cli, "build_cpu_repository", builder)
    with pytest.raises(SystemExit):
        cli.main(["serve", "--untrained", "--repository", str(tmp_path / "r"), "--reid-precision", "bf16"])
    assert seen["reid_precision"] == "bf16" and seen["untrained"] is True
