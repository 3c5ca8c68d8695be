"""The seed's usage snippets (AGENTS.md), verbatim, against the embedded Triton server.

Only constructor arguments differ from the seed: ``url=`` points at the test server, and the
model paths lie under an allowed model root. Everything after the constructor is copied as is.
"""

from __future__ import annotations

import numpy as np
import pytest
from _client_fixtures import *  # noqa: F403

from enrichment_light import (
    PersonReID,
    PoseEstimator,
    PoseResult,
    ReIDResult,
    ThreatDetector,
    ThreatResult,
    load_person_reid,
    load_pose_estimator,
    load_threat_detector,
)
from enrichment_light.core.processing.image import decode_image

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def url(enrichment_server) -> str:
    return enrichment_server.grpc_url


@pytest.fixture(scope="module")
def images(sample_paths):
    return [decode_image(p.read_bytes()) for p in sample_paths]


def test_seed_person_reid_snippet_runs_when_constructor_points_at_server(url, images):
    person_crop = images[0][100:500, 50:250]
    other_crop = images[1][50:600, 300:700]
    # --- seed snippet (constructor changed) ---
    reid = PersonReID("/models/osnet-reid", url=url)
    reid.load_model()
    result = reid.extract_embedding(person_crop)
    emb1, emb2 = result.embedding, reid.extract_embedding(other_crop).embedding
    similarity = reid.compute_similarity(emb1, emb2)
    is_same = reid.is_same_person(emb1, emb2, threshold=0.7)
    # --- end ---
    assert isinstance(result, ReIDResult)
    assert len(result.embedding) == 512
    assert -1.0 <= similarity <= 1.0
    assert is_same == (similarity > 0.7)
    assert reid.compute_similarity(emb1, emb1) == pytest.approx(1.0, abs=1e-5)
    reid.close()


def test_seed_pose_estimator_snippet_runs_when_constructor_points_at_server(url, images, capsys):
    image = images[1]
    # --- seed snippet (constructor changed) ---
    estimator = PoseEstimator("/models/yolov8n-pose.pt", use_tensorrt=True, url=url)
    estimator.load_model()
    result = estimator.estimate_pose(image)
    print(f"Pose: {result.pose_class}, Suspicious: {result.is_suspicious}")
    # --- end ---
    assert isinstance(result, PoseResult)
    assert capsys.readouterr().out.startswith("Pose: ")
    estimator.close()


def test_seed_threat_detector_snippet_runs_when_constructor_points_at_server(url, images, capsys):
    image = images[0]
    # --- seed snippet (constructor changed) ---
    detector = ThreatDetector("/models/threat-detection.pt", use_tensorrt=True, url=url)
    detector.load_model()
    result = detector.detect_threats(image)
    if result.has_threat:
        print(f"Max severity: {result.max_severity}")
    # --- end ---
    assert isinstance(result, ThreatResult)
    assert isinstance(result.to_context_string(), str)
    detector.close()


def test_seed_model_loading_with_tensorrt_snippet_reports_backend(url):
    # --- seed snippet (constructor changed) ---
    model = PoseEstimator(
        model_path="/models/yolov8n-pose.pt",
        use_tensorrt=True,  # or None to use env var
        url=url,
    )
    model.load_model()  # Auto-exports to TensorRT if needed

    # Check backend
    info = model.get_backend_info()
    print(f"Using: {info['backend']}")  # 'tensorrt' or 'pytorch'
    # --- end ---
    assert info["backend"] == "onnxruntime"  # the cpu repository: what really serves
    assert info["tensorrt_requested"] is True
    assert info["tensorrt_active"] is False
    assert info["model_loaded"] is True
    assert info["model_path"] == "/models/yolov8n-pose.pt"
    assert info["server_url"] == url
    assert info["device"] == "cpu"
    model.close()


def test_seed_batch_inference_snippet_returns_one_pose_per_image(url, images):
    model = PoseEstimator("/models/yolov8n-pose.pt", url=url)
    img1, img2, img3 = images[0], images[1], images[0]
    # --- seed snippet ---
    images_ = [img1, img2, img3]
    results = model.estimate_poses_batch(images_)
    # --- end ---
    assert len(results) == 3
    assert all(isinstance(r, PoseResult) for r in results)
    model.close()


def test_seed_resource_management_snippet_unloads_on_explicit_server(explicit_server, images):
    image = images[0]
    # --- seed snippet (constructor changed) ---
    model = ThreatDetector("/models/threat-detection.pt", url=explicit_server.grpc_url)
    model.load_model()
    try:
        result = model.detect_threats(image)
    finally:
        model.unload()  # Free VRAM
    # --- end ---
    assert isinstance(result, ThreatResult)
    assert not model.client.is_model_ready("threat")
    model.load_model()  # loads it again through the repository API
    assert model.client.is_model_ready("threat")
    assert model.detect_threats(image) is not None
    model.close()


def test_seed_factories_return_loaded_models(url, monkeypatch):
    monkeypatch.setenv("ENRICHMENT_TRITON_URL", url)
    monkeypatch.setenv("THREAT_DETECTOR_USE_TENSORRT", "1")
    reid = load_person_reid("/models/osnet-reid")
    pose = load_pose_estimator("/models/yolov8n-pose.pt", "cuda")
    threat = load_threat_detector("/models/threat-detection.pt")
    assert reid.model_loaded and pose.model_loaded and threat.model_loaded
    assert threat.get_backend_info()["tensorrt_requested"] is True
    assert pose.get_backend_info()["tensorrt_requested"] is False
    for m in (reid, pose, threat):
        m.close()


def test_estimate_pose_returns_most_confident_person_or_empty_unknown(url, images):
    with PoseEstimator(url=url) as model:
        everyone = model.estimate_poses(images[1])
        best = model.estimate_pose(images[1])
        blank = model.estimate_pose(np.full((64, 64, 3), 114, np.uint8))
    if everyone:
        assert best.score == max(p.score for p in everyone)
    assert blank.pose_class == "unknown" or blank.keypoints


def test_facades_accept_pil_images(url, images):
    pil = pytest.importorskip("PIL.Image")
    with PersonReID(url=url) as reid:
        a = reid.extract_embedding(pil.fromarray(images[0][:200, :100]))
        b = reid.extract_embedding(images[0][:200, :100])
    assert a.embedding_hash == b.embedding_hash


def test_facade_constructor_rejects_unsafe_model_path(url):
    with pytest.raises(ValueError, match="invalid model path"):
        PersonReID("/models/../etc/passwd", url=url)
