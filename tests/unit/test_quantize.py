"""INT8 export pieces that need no server: recipes, matching, thresholds, frames, CLI checks, manifest.

Accuracy is judged with a real trained checkpoint in ``tests/integration/test_int8.py``; the
random-init models here only exercise the plumbing (and OSNet's cosine gate, for which no trained
weights are available offline).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from enrichment_export import cli as export_cli
from enrichment_export import quantize
from enrichment_export.repository import _check_precision, precision_entry
from enrichment_light.cli import health_table
from enrichment_light.client.model_config import backend_from_config
from enrichment_light.core import contract as ct

BOX = [10.0, 10.0, 110.0, 210.0]


@pytest.mark.parametrize(
    ("ref", "ref_cls", "det", "det_cls", "expected"),
    [
        ([BOX], [0], [BOX], [0], [(0, 0)]),
        ([BOX], [0], [BOX], [1], []),  # another class never matches
        ([BOX], [0], [[60.0, 10.0, 160.0, 210.0]], [0], []),  # IoU 1/3 < 0.5
        ([BOX], [0], [[12.0, 12.0, 112.0, 212.0]], [0], [(0, 0)]),  # IoU ~0.94
        ([BOX], [0], [BOX, BOX], [0, 0], [(0, 0)]),  # one-to-one: the duplicate stays unmatched
        ([], [], [BOX], [0], []),
        ([BOX], [0], [], [], []),
    ],
)
def test_match_detections_pairs_same_class_overlaps_when_iou_at_least_half(ref, ref_cls, det, det_cls, expected):
    scores = np.linspace(0.9, 0.5, len(det)) if det else np.zeros(0)
    got = quantize.match_detections(
        np.array(ref).reshape(-1, 4), np.array(ref_cls), np.array(det).reshape(-1, 4), scores, np.array(det_cls)
    )
    assert got == expected


def test_default_recipe_keeps_the_yolo_decode_in_float_when_quantising_the_head_conv_stacks():
    recipe = quantize.default_recipe(ct.THREAT_MODEL)
    names = [
        "/Cast",
        "/Div",
        "/model/model.0/conv/Conv",
        "/model/model.22/cv2.0/cv2.0.0/conv/Conv",
        "/model/model.22/cv3.2/cv3.2.1/act/Mul",
        "/model/model.22/cv2.0/cv2.0.2/Conv",
        "/model/model.22/dfl/conv/Conv",
        "/model/model.22/Concat_3",
    ]
    assert recipe.excluded(names) == [
        "/Cast",
        "/Div",
        "/model/model.22/cv2.0/cv2.0.2/Conv",
        "/model/model.22/dfl/conv/Conv",
        "/model/model.22/Concat_3",
    ]
    reid = quantize.default_recipe(ct.REID_MODEL)
    assert reid.excluded(["/model/conv1/conv/Conv", "/model/fc/fc.0/Gemm", "/ReduceL2", "/Div_2"]) == [
        "/model/fc/fc.0/Gemm",
        "/ReduceL2",
        "/Div_2",
    ]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"activation_type": "int4"}, "activation_type"),
        ({"weight_type": "float"}, "weight_type"),
        ({"calibration_method": "mse"}, "calibration_method"),
    ],
)
def test_quantization_recipe_rejects_unknown_values_when_constructed(kwargs, message):
    with pytest.raises(ValueError, match=message):
        quantize.QuantizationRecipe(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_recall": 1.5}, "min_recall"),
        ({"min_precision": -0.1}, "min_precision"),
        ({"min_cosine": 2}, "min_cosine"),
        ({"max_keypoint_error_px": -1.0}, "max_keypoint_error_px"),
    ],
)
def test_accuracy_thresholds_reject_out_of_range_values_when_constructed(kwargs, message):
    with pytest.raises(ValueError, match=message):
        quantize.AccuracyThresholds(**kwargs)


def test_default_recipe_rejects_unknown_model_when_named():
    with pytest.raises(ValueError, match="model_name must be one of"):
        quantize.default_recipe("yolov9")


def test_augment_gives_distinct_deterministic_variants_when_seeds_differ():
    image = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    a = quantize.augment(image, variants=4, seed=1)
    b = quantize.augment(image, variants=4, seed=1)
    c = quantize.augment(image, variants=3, seed=2, include_original=False)
    assert len(a) == 4 and a[0] is image and len(c) == 3
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not any(x.shape == y.shape and np.array_equal(x, y) for x in a for y in c)


def test_model_inputs_prepares_frames_like_serving_when_detector_or_reid():
    frame = np.full((480, 640, 3), 7, dtype=np.uint8)
    (det,) = quantize.model_inputs(ct.POSE_MODEL, [frame])
    assert det.shape == (1, 640, 640, 3) and det.dtype == np.uint8
    assert det[0, 0, 0, 0] == 114 and det[0, 320, 320, 0] == 7  # letterbox padding, then the frame
    crops = quantize.model_inputs(ct.REID_MODEL, [frame])
    assert len(crops) == quantize.OSNET_CROPS_PER_FRAME
    assert all(c.shape == (1, 256, 128, 3) for c in crops)


def test_image_files_raises_calibration_error_when_folder_missing_or_empty(tmp_path):
    with pytest.raises(quantize.CalibrationError, match="does not exist"):
        quantize.image_files(tmp_path / "nope")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(quantize.CalibrationError, match="no images"):
        quantize.image_files(tmp_path)


def _write_frames(folder: Path, n: int, seed: int) -> None:
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        cv2.imwrite(str(folder / f"f{i:02d}.png"), rng.integers(0, 256, (64, 96, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def osnet_fp32(tmp_path_factory):
    from enrichment_export import onnx_export

    path = tmp_path_factory.mktemp("osnet") / "fp32.onnx"
    return onnx_export.export_onnx(ct.REID_MODEL, onnx_export.untrained_model(ct.REID_MODEL), path).path


def test_export_int8_refuses_when_held_out_frames_are_calibration_frames(tmp_path, osnet_fp32):
    _write_frames(tmp_path / "calib", 3, seed=0)
    _write_frames(tmp_path / "held", 1, seed=0)  # byte-identical to calib/f00.png
    with pytest.raises(quantize.CalibrationError, match="also calibration frames"):
        quantize.export_int8(
            ct.REID_MODEL, osnet_fp32, tmp_path / "out.onnx", calibration_dir=tmp_path / "calib",
            holdout_dir=tmp_path / "held",
        )  # fmt: skip
    assert not (tmp_path / "out.onnx").exists()


def test_export_int8_gates_osnet_cosine_when_random_init(tmp_path, osnet_fp32):
    """Random-init OSNet (no trained weights offline): the cosine gate runs and passes, figures recorded."""
    _write_frames(tmp_path / "calib", 8, seed=1)
    result = quantize.export_int8(
        ct.REID_MODEL, osnet_fp32, tmp_path / "repo" / "model.onnx", calibration_dir=tmp_path / "calib"
    )
    assert result.calibration_frames == 6 and result.calibration_source == "user"  # every 4th held out
    assert result.report.frames == 2 * quantize.OSNET_CROPS_PER_FRAME
    assert result.report.passed and result.report.min_cosine >= 0.99
    meta = precision_entry(result.metadata)
    assert meta["int8_accuracy"]["min_cosine"] == pytest.approx(result.report.min_cosine)
    assert meta["int8_calibration"] == {"frames": 6, "source": "user"} and meta["int8_gate_forced"] is False
    strict = quantize.AccuracyThresholds(min_cosine=1.0)
    out = tmp_path / "strict" / "model.onnx"
    with pytest.raises(quantize.AccuracyGateError, match=r"min cosine .* < 1\.0"):
        quantize.export_int8(ct.REID_MODEL, osnet_fp32, out, calibration_dir=tmp_path / "calib", thresholds=strict)
    assert not out.exists()
    forced = quantize.export_int8(
        ct.REID_MODEL, osnet_fp32, out, calibration_dir=tmp_path / "calib", thresholds=strict, force=True
    )
    assert forced.forced and out.is_file() and precision_entry(forced.metadata)["int8_gate_forced"] is True


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["onnx", "--untrained", "--calibration", "x"], "--calibration only applies with --precision int8"),
        (["onnx", "--untrained", "--precision", "int8", "--calibration", "/nonexistent/frames"], "does not exist"),
        (["onnx", "--untrained", "--precision", "int8", "--gate-conf", "1.5"], "--gate-conf must be in"),
        (["onnx", "--untrained", "--precision", "int8", "--max-calibration-frames", "0"], "must be >= 1"),
        (["onnx", "--untrained", "--precision", "int8", "--holdout", "."], "--holdout needs --calibration"),
    ],
)
def test_export_cli_onnx_int8_fails_with_one_line_before_any_export_when_arguments_bad(argv, message, capsys):
    try:
        code = export_cli.main(argv)
    except SystemExit as exc:
        code, err = 2, str(exc.code)
    else:
        err = capsys.readouterr().err
    assert code != 0 and message in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("precision", "precisions", "message"),
    [
        ("int8", {ct.POSE_MODEL: "int8", ct.THREAT_MODEL: "fp32", ct.REID_MODEL: "fp32"}, "needs INT8 ONNX files"),
        ("int8", {ct.POSE_MODEL: "int8"}, "no ONNX"),
        ("fp32", {ct.POSE_MODEL: "int8", ct.THREAT_MODEL: "fp32"}, "are INT8"),
        ("int8", {ct.POSE_MODEL: "int8", ct.THREAT_MODEL: "int8", ct.REID_MODEL: "fp32"}, None),
        ("auto", {ct.POSE_MODEL: "int8", ct.THREAT_MODEL: "fp32"}, None),
    ],
)
def test_check_precision_enforces_build_repository_precision_when_files_differ(precision, precisions, message):
    sources = {name: Path(f"/x/{name}.onnx") for name in precisions}
    if message is None:
        _check_precision(precision, precisions, sources)
    else:
        with pytest.raises(ValueError, match=message):
            _check_precision(precision, precisions, sources)


@pytest.mark.parametrize(
    ("config", "manifest", "expected"),
    [
        ({"name": "m", "backend": "python", "parameters": {"onnx_file": {"string_value": "model.onnx"},
                                                           "precision": {"string_value": "int8"}}}, None, "int8"),
        ({"name": "m", "backend": "python", "parameters": {"onnx_file": {"string_value": "model.onnx"}}}, None, "fp32"),
        ({"name": "m", "platform": "tensorrt_plan", "parameters": {"precision": {"string_value": "fp16"}}}, None,
         "fp16"),
        ({"name": "m", "platform": "onnxruntime_onnx"}, {"precision": "int8"}, "int8"),
        ({"name": "pose", "platform": "ensemble"}, None, "-"),
    ],
)  # fmt: skip
def test_backend_from_config_reports_precision_when_config_or_manifest_records_it(config, manifest, expected):
    assert backend_from_config(config, manifest).precision == expected


def test_health_table_shows_precision_column_when_reported():
    report = {
        "urls": ["127.0.0.1:1"],
        "live": True,
        "ready": True,
        "models": {ct.THREAT_MODEL: {"ready": True, "backend": "onnxruntime", "device": "cpu", "precision": "int8"}},
    }
    lines = health_table(report).splitlines()
    assert lines[1].split()[-1] == "precision" and lines[2].split()[-1] == "int8"


def test_accuracy_report_to_dict_is_json_and_omits_missing_figures_when_reid():
    report = quantize.AccuracyReport(ct.REID_MODEL, 4, True, min_cosine=0.999, mean_cosine=0.9995)
    data = json.loads(json.dumps(report.to_dict()))
    assert "recall" not in data and data["min_cosine"] == 0.999 and data["failures"] == []
    assert "PASS" in report.summary()
