"""Threat taxonomy: name-based mapping, COCO defaults, overrides, bad files, padded tensors."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml

from enrichment_light.client.decoding import threat_result_of
from enrichment_light.client.results import Severity, ThreatResult
from enrichment_light.core.contract import (
    BOXES,
    CLASS_IDS,
    MAX_DETECTIONS,
    MAX_SEVERITY,
    NUM_DETECTIONS,
    SCORES,
    SEVERITY,
    THREAT_TYPE,
    model_spec,
)
from enrichment_light.core.processing.detection import Detections
from enrichment_light.core.processing.threat import (
    TAXONOMY_ENV,
    THREAT_FIELDS,
    ThreatTaxonomy,
    ThreatTaxonomyError,
    max_severity,
    normalize_name,
    pad_threats,
    select_threats,
    unpad_threats,
)


def coco_names() -> dict[int, str]:
    ultralytics = pytest.importorskip("ultralytics")
    path = Path(ultralytics.__file__).parent / "cfg" / "datasets" / "coco.yaml"
    return yaml.safe_load(path.read_text())["names"]


@dataclass
class Dets:  # duck-typed stand-in for processing.detection.Detections
    xyxy: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray


def dets(class_ids, scores=None) -> Dets:
    n = len(class_ids)
    xyxy = np.arange(n * 4, dtype=np.float32).reshape(n, 4) + np.array([0, 0, 10, 10], np.float32)
    scores = np.linspace(0.9, 0.6, n).astype(np.float32) if scores is None else np.asarray(scores, np.float32)
    return Dets(xyxy, scores, np.asarray(class_ids, np.int32))


@pytest.fixture
def taxonomy(monkeypatch) -> ThreatTaxonomy:
    monkeypatch.delenv(TAXONOMY_ENV, raising=False)
    return ThreatTaxonomy.load()


# --- defaults ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("names", "severity"),
    [
        (["gun", "pistol", "rifle", "firearm", "handgun", "shotgun"], Severity.CRITICAL),
        (["knife", "sword", "machete", "axe"], Severity.HIGH),
        (["bat", "baseball bat", "crowbar", "hammer"], Severity.MEDIUM),
    ],
)
def test_taxonomy_lookup_default_severity_when_name_is_listed(taxonomy, names, severity):
    for name in names:
        assert taxonomy.lookup(name) == (name, severity)


@pytest.mark.parametrize(
    ("spelling", "canonical"),
    [("Baseball_Bat", "baseball bat"), ("BASEBALL-BAT", "baseball bat"), ("  baseball   bat ", "baseball bat"),
     ("Hand_Gun", None), ("HandGun", "handgun"), ("KNIFE", "knife")],
)  # fmt: skip
def test_taxonomy_lookup_normalises_names_when_spelling_differs(taxonomy, spelling, canonical):
    threat_type, _ = taxonomy.lookup(spelling)
    if canonical is None:  # "hand gun" is a different name from "handgun": unmapped, reported as itself
        assert threat_type == "hand gun"
    else:
        assert threat_type == canonical


def test_taxonomy_resolve_only_knife_and_baseball_bat_when_model_is_stock_coco(taxonomy, caplog):
    names = coco_names()
    assert len(names) == 80
    with caplog.at_level(logging.WARNING):
        mapping = taxonomy.resolve(names)
    assert np.flatnonzero(mapping.is_threat).tolist() == [34, 43]
    assert mapping.threat_type[34] == "baseball bat" and mapping.severity[34] == Severity.MEDIUM.rank
    assert mapping.threat_type[43] == "knife" and mapping.severity[43] == Severity.HIGH.rank
    assert mapping.unmapped == ()
    assert not caplog.records


def test_taxonomy_resolve_maps_by_name_when_custom_model_has_four_classes(taxonomy):
    # The original looked ids up first: id 0 ("Gun") would have been COCO's "person".
    mapping = taxonomy.resolve(["Gun", "knife", "Baseball_Bat", "person"])
    assert mapping.is_threat.tolist() == [True, True, True, False]
    assert mapping.threat_type.tolist() == ["gun", "knife", "baseball bat", ""]
    assert mapping.severity.tolist() == [4, 3, 2, 0]
    assert mapping.severity.dtype == np.int32


def test_taxonomy_resolve_reports_default_severity_and_warns_when_name_unmapped(taxonomy, caplog):
    with caplog.at_level(logging.WARNING, logger="enrichment_light.core.processing.threat"):
        mapping = taxonomy.resolve(["person", "Grenade"])
    assert mapping.unmapped == ("Grenade",)
    assert mapping.is_threat.tolist() == [False, True]
    assert mapping.threat_type[1] == "grenade" and mapping.severity[1] == Severity.LOW.rank
    assert any("Grenade" in r.getMessage() and "'low'" in r.getMessage() for r in caplog.records)


def test_taxonomy_resolve_raises_when_name_ids_not_contiguous(taxonomy):
    with pytest.raises(ValueError, match="ids must be"):
        taxonomy.resolve({0: "gun", 2: "knife"})


# --- loading and overriding ----------------------------------------------------------------------


def write(tmp_path: Path, data, name="taxonomy.json") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_taxonomy_load_uses_override_file_when_path_given(tmp_path, caplog):
    path = write(tmp_path, {"default_severity": "high", "threats": {"critical": ["grenade"]}, "ignore": ["person"]})
    taxonomy = ThreatTaxonomy.load(path)
    with caplog.at_level(logging.WARNING):
        mapping = taxonomy.resolve(["person", "grenade", "knife"])
    assert mapping.severity.tolist() == [0, 4, 3]  # knife is no longer listed: default severity high
    assert mapping.unmapped == ("knife",)
    assert str(path) in caplog.text


def test_taxonomy_load_uses_env_when_no_path(tmp_path, monkeypatch):
    path = write(tmp_path, {"threats": {"medium": ["umbrella"]}})
    monkeypatch.setenv(TAXONOMY_ENV, str(path))
    taxonomy = ThreatTaxonomy.load()
    assert taxonomy.lookup("umbrella") == ("umbrella", Severity.MEDIUM)
    assert taxonomy.source == str(path)


def test_taxonomy_resolve_ignores_unmapped_when_default_severity_none(tmp_path):
    taxonomy = ThreatTaxonomy.load(write(tmp_path, {"default_severity": "none", "threats": {"high": ["axe"]}}))
    mapping = taxonomy.resolve(["axe", "frisbee"])
    assert mapping.is_threat.tolist() == [True, False]


def test_taxonomy_packaged_default_is_valid_and_ignores_78_coco_names(taxonomy):
    assert len(taxonomy.ignore) == 78
    assert taxonomy.default_severity is Severity.LOW


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("{not json", "invalid JSON"),
        ("[]", "top level must be a JSON object"),
        ({"threats": {"deadly": ["gun"]}}, "unknown severity 'deadly'"),
        ({"threats": {"none": ["gun"]}}, "unknown severity 'none'"),
        ({"default_severity": "extreme"}, "unknown default_severity 'extreme'"),
        ({"threats": {"high": ["knife"], "medium": ["Knife"]}}, "duplicate name 'Knife' in threats.medium"),
        ({"threats": {"high": ["knife"]}, "ignore": ["knife"]}, "duplicate name 'knife' in ignore"),
        ({"threats": {"high": ["knife", "kni_fe", "KNI FE"]}}, "duplicate name 'KNI FE'"),
        ({"threats": {"high": "knife"}}, "threats.high must be a list"),
        ({"threats": {"high": [""]}}, "invalid name ''"),
        ({"threats": {"high": [3]}}, "invalid name 3"),
        ({"threats": ["knife"]}, "'threats' must be an object"),
        ({"threat": {}}, "unknown keys \\['threat'\\]"),
    ],
)
def test_taxonomy_load_raises_naming_file_when_content_bad(tmp_path, content, match):
    path = write(tmp_path, content)
    with pytest.raises(ThreatTaxonomyError, match=match) as info:
        ThreatTaxonomy.load(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_taxonomy_load_raises_when_file_missing(tmp_path):
    with pytest.raises(ThreatTaxonomyError, match="cannot read"):
        ThreatTaxonomy.load(tmp_path / "nope.json")


def test_normalize_name_treats_separators_alike():
    assert normalize_name("Baseball_Bat") == normalize_name("baseball-bat") == normalize_name("BASEBALL  BAT")


# --- selection, results, padded tensors --------------------------------------------------------------


def test_select_threats_keeps_only_threats_when_mixed(taxonomy):
    mapping = taxonomy.resolve(["Gun", "knife", "Baseball_Bat", "person"])
    threats = select_threats(dets([3, 0, 3, 2, 1]), mapping)
    assert threats.class_ids.tolist() == [0, 2, 1]
    assert threats.threat_type.tolist() == ["gun", "baseball bat", "knife"]
    assert threats.class_name.tolist() == ["Gun", "Baseball_Bat", "knife"]
    assert threats.severity.tolist() == [4, 2, 3]
    assert max_severity(threats) == Severity.CRITICAL.rank
    assert threats.xyxy.dtype == np.float32 and threats.xyxy.shape == (3, 4)


def test_select_threats_empty_when_no_detections(taxonomy):
    threats = select_threats(dets([]), taxonomy.resolve(coco_names()))
    assert len(threats) == 0 and max_severity(threats) == 0
    result = threat_result_of(threats)
    assert result == ThreatResult()


@pytest.mark.parametrize("bad_ids", [[-1], [4]])
def test_select_threats_raises_when_class_id_out_of_range(taxonomy, bad_ids):
    with pytest.raises(ValueError, match="class ids must be in"):
        select_threats(dets(bad_ids), taxonomy.resolve(["Gun", "knife", "Baseball_Bat", "person"]))


def test_threat_detections_to_result_builds_seed_result(taxonomy):
    mapping = taxonomy.resolve(coco_names())
    result = threat_result_of(select_threats(dets([0, 43, 34]), mapping), inference_time_ms=5.0, backend="onnxruntime")
    assert result.has_threat and result.max_severity is Severity.HIGH
    assert [(t.threat_type, t.severity, t.class_name) for t in result.threats] == [
        ("knife", Severity.HIGH, "knife"),
        ("baseball bat", Severity.MEDIUM, "baseball bat"),
    ]
    assert result.backend == "onnxruntime"


def test_threat_detections_padded_round_trip_when_matching_contract(taxonomy):
    mapping = taxonomy.resolve(["Gun", "knife", "Baseball_Bat", "person"])
    threats = select_threats(dets([0, 3, 1]), mapping)
    padded = pad_threats(threats)
    spec = model_spec("threat_postprocess")
    for out in spec.outputs:
        assert padded[out.name].dtype == out.dtype, out.name
        assert padded[out.name].shape == out.shape, out.name
    assert padded[NUM_DETECTIONS].tolist() == [2]
    assert padded[THREAT_TYPE][:3].tolist() == [b"gun", b"knife", b""]
    assert padded[CLASS_IDS][2] == -1 and padded[MAX_SEVERITY].tolist() == [4]
    back = unpad_threats(padded, class_names=mapping.class_names)
    for field in ("xyxy", "scores", "class_ids", "severity"):
        np.testing.assert_array_equal(getattr(back, field), getattr(threats, field))
    assert back.threat_type.tolist() == threats.threat_type.tolist()
    assert back.class_name.tolist() == threats.class_name.tolist()


def test_threat_detections_to_padded_keeps_top_scores_when_over_max_det(taxonomy):
    mapping = taxonomy.resolve(["knife"])
    scores = np.linspace(0.1, 0.9, 7)
    padded = pad_threats(select_threats(dets([0] * 7, scores), mapping), max_det=3)
    assert padded[NUM_DETECTIONS].tolist() == [3]
    np.testing.assert_allclose(padded[SCORES], scores[::-1][:3].astype(np.float32))
    assert padded[BOXES].shape == (3, 4) and padded[SEVERITY].tolist() == [3, 3, 3]


def test_threat_detections_empty_padded_has_none_severity():
    padded = pad_threats(Detections.empty(*THREAT_FIELDS))
    assert padded[NUM_DETECTIONS].tolist() == [0] and padded[MAX_SEVERITY].tolist() == [0]
    assert padded[SCORES].shape == (MAX_DETECTIONS,)
    assert len(unpad_threats(padded)) == 0


def test_threat_detections_from_padded_raises_when_count_out_of_range():
    padded = pad_threats(Detections.empty(*THREAT_FIELDS), max_det=2)
    padded[NUM_DETECTIONS] = np.array([3], np.int32)
    with pytest.raises(ValueError, match="NUM_DETECTIONS must be in"):
        unpad_threats(padded)
