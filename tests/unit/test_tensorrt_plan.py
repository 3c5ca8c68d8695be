"""TensorRT plan logic without a GPU: naming, staleness, sidecars, env vars, check-only, install."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from enrichment_export import cli
from enrichment_export import tensorrt_plan as tp
from enrichment_light.core import contract
from enrichment_light.core.errors import ModelFileError


@pytest.fixture(autouse=True, scope="module")
def _model_roots(tmp_path_factory):
    # validate_model_path only allows the configured roots; tests write under pytest's tmp dir.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ENRICHMENT_MODEL_ROOTS", os.pathsep.join([str(tmp_path_factory.getbasetemp()), os.getcwd()]))
        yield


A400 = tp.DeviceInfo((8, 6), "NVIDIA RTX A400", "10.5.0")


@pytest.fixture
def onnx_file(tmp_path):
    # The plan logic only hashes the ONNX file; its content is irrelevant here.
    path = tmp_path / "repo" / contract.POSE_MODEL / "1" / "model.onnx"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"fake onnx v1")
    return path


def _request(onnx_file, tmp_path, **kwargs):
    return tp.make_plan_request(contract.POSE_MODEL, onnx_file, device=A400, cache_dir=tmp_path / "cache", **kwargs)


def _fake_builder(request):
    return b"PLAN:" + request.precision.encode()


def _passing_verifier(plan, request):
    return tp.VerificationReport(True, request.precision, (1, 8), 0.01, 0.02, {"output0@batch1": {"max_abs_diff": 0}})


def _failing_verifier(plan, request):
    return tp.VerificationReport(False, request.precision, (1, 8), 0.01, 0.02, {}, "batch 8: output0 too far")


def test_plan_filename_names_compute_capability():
    assert tp.plan_filename((8, 6)) == "model.sm86.plan"
    assert tp.plan_filename((12, 0)) == "model.sm120.plan"
    assert tp.sidecar_path("/x/model.sm86.plan").name == "model.sm86.plan.json"


@pytest.mark.parametrize(("text", "cc"), [("8.6", (8, 6)), ("86", (8, 6)), ("sm86", (8, 6)), ("sm_89", (8, 9))])
def test_parse_compute_capability_accepts_common_spellings(text, cc):
    assert tp.parse_compute_capability(text) == cc


@pytest.mark.parametrize("text", ["", "eight", "8.", "sm"])
def test_parse_compute_capability_raises_when_malformed(text):
    with pytest.raises(ValueError, match="compute capability"):
        tp.parse_compute_capability(text)


def test_make_plan_request_uses_cache_layout_when_no_plan_path(onnx_file, tmp_path):
    req = _request(onnx_file, tmp_path)
    assert req.plan_path == tmp_path / "cache" / contract.POSE_MODEL / "model.sm86.plan"
    assert req.timing_cache == req.plan_path.parent / "timing.sm86.trt10.5.0.cache"
    assert req.input_name == contract.IMAGES and req.input_shape == (640, 640, 3)
    assert req.precision == "fp16" and req.profile == tp.BatchProfile(1, 4, 8)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"model_name": "pose"}, ValueError, "model_name must be one of"),
        ({"precision": "int8"}, ValueError, "precision must be one of"),
        ({"profile": tp.BatchProfile(1, 4, 16)}, ValueError, "exceeds"),
        ({"workspace_bytes": 10}, ValueError, "workspace_bytes"),
        ({"onnx_path": "missing.onnx"}, ModelFileError, "export it first"),
    ],
)
def test_make_plan_request_raises_when_arguments_are_bad(onnx_file, tmp_path, kwargs, error, match):
    args = {"model_name": contract.POSE_MODEL, "onnx_path": onnx_file, **kwargs}
    if args["onnx_path"] == "missing.onnx":
        args["onnx_path"] = tmp_path / "missing.onnx"
    with pytest.raises(error, match=match):
        tp.make_plan_request(args.pop("model_name"), args.pop("onnx_path"), device=A400, **args)


@pytest.mark.parametrize(
    ("profile", "match"),
    [((0, 1, 1), "positive int"), ((2, 1, 4), "min <= opt <= max"), ((1, 8, 4), "min <= opt <= max")],
)
def test_batch_profile_raises_when_invalid(profile, match):
    with pytest.raises(ValueError, match=match):
        tp.BatchProfile(*profile)


def test_ensure_plan_builds_then_skips_when_sidecar_matches(onnx_file, tmp_path):
    req = _request(onnx_file, tmp_path)
    first = tp.ensure_plan(req, A400, builder=_fake_builder, verifier=_passing_verifier)
    assert first.action == "built" and first.decision.reason == "no plan yet"
    assert req.plan_path.read_bytes() == b"PLAN:fp16"
    side = json.loads(tp.sidecar_path(req.plan_path).read_text())
    assert side["compute_capability"] == "8.6" and side["gpu_name"] == "NVIDIA RTX A400"
    assert side["tensorrt_version"] == "10.5.0" and side["precision"] == "fp16"
    assert side["profile"] == {"min": 1, "opt": 4, "max": 8}
    assert side["onnx_sha256"] == tp.sha256_file(onnx_file) and side["build_time"]
    assert side["verification"]["passed"] is True

    def must_not_build(request):
        raise AssertionError("rebuilt an up-to-date plan")

    second = tp.ensure_plan(req, A400, builder=must_not_build, verifier=_passing_verifier)
    assert second.action == "up-to-date"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ("cc", "compute capability 8.6 -> 8.9"),
        ("trt", "TensorRT 10.5.0 -> 10.6.0"),
        ("onnx", "ONNX sha256"),
        ("precision", "precision fp16 -> fp32"),
        ("profile", "profile 1/4/8 -> batch 1/2/4"),
    ],
)
def test_plan_decision_rebuilds_when_plan_is_stale(onnx_file, tmp_path, change, reason):
    tp.ensure_plan(_request(onnx_file, tmp_path), A400, builder=_fake_builder, verifier=_passing_verifier)
    device, kwargs = A400, {}
    if change == "cc":
        device = tp.DeviceInfo((8, 9), "L4", "10.5.0")
        kwargs["plan_path"] = _request(onnx_file, tmp_path).plan_path  # same file, other GPU
    elif change == "trt":
        device = tp.DeviceInfo((8, 6), "NVIDIA RTX A400", "10.6.0")
    elif change == "onnx":
        onnx_file.write_bytes(b"fake onnx v2")
    elif change == "precision":
        kwargs["precision"] = "fp32"
    else:
        kwargs["profile"] = tp.BatchProfile(1, 2, 4)
    req = tp.make_plan_request(contract.POSE_MODEL, onnx_file, device=device, cache_dir=tmp_path / "cache", **kwargs)
    decision = tp.plan_decision(req, device)
    assert decision.build and reason in decision.reason and decision.reason.startswith("stale:")
    outcome = tp.ensure_plan(req, device, builder=_fake_builder, verifier=_passing_verifier)
    assert outcome.action == "built"
    assert tp.read_sidecar(tp.sidecar_path(req.plan_path)).onnx_sha256 == tp.sha256_file(onnx_file)


@pytest.mark.parametrize(
    ("sidecar", "reason"),
    [(None, "has no sidecar"), ("{not json", "unreadable"), ('{"precision": "fp16"}', "unreadable")],
)
def test_plan_decision_rebuilds_when_sidecar_is_missing_or_bad(onnx_file, tmp_path, sidecar, reason):
    req = _request(onnx_file, tmp_path)
    req.plan_path.parent.mkdir(parents=True)
    req.plan_path.write_bytes(b"old plan")
    if sidecar is not None:
        tp.sidecar_path(req.plan_path).write_text(sidecar)
    decision = tp.plan_decision(req, A400)
    assert decision.build and reason in decision.reason


def test_ensure_plan_keeps_old_plan_when_verification_fails(onnx_file, tmp_path):
    req = _request(onnx_file, tmp_path)
    tp.ensure_plan(req, A400, builder=_fake_builder, verifier=_passing_verifier)
    old_side = tp.sidecar_path(req.plan_path).read_text()
    with pytest.raises(tp.PlanVerificationError, match="not installed"):
        tp.ensure_plan(req, A400, force=True, builder=lambda r: b"BAD", verifier=_failing_verifier)
    assert req.plan_path.read_bytes() == b"PLAN:fp16"
    assert tp.sidecar_path(req.plan_path).read_text() == old_side
    assert sorted(p.name for p in req.plan_path.parent.iterdir()) == ["model.sm86.plan", "model.sm86.plan.json"]


def test_ensure_plan_reports_without_building_when_check_only(onnx_file, tmp_path):
    req = _request(onnx_file, tmp_path)
    outcome = tp.ensure_plan(req, A400, check_only=True, builder=None, verifier=None)
    assert outcome.action == "would-build" and not req.plan_path.exists()
    line = outcome.decision.describe()
    assert "would build: no plan yet" in line and "sm86" in line and "fp16" in line and "batch 1/4/8" in line


def test_sidecar_round_trips_through_json(tmp_path):
    side = tp.PlanSidecar("8.6", "A400", "10.5.0", "fp16", {"min": 1, "opt": 4, "max": 8}, "ab" * 32)
    tp.write_sidecar(tmp_path / "s.json", side)
    assert tp.read_sidecar(tmp_path / "s.json") == side
    with pytest.raises(ModelFileError, match="does not exist"):
        tp.read_sidecar(tmp_path / "nope.json")


@pytest.mark.parametrize(
    ("env", "model", "use", "fp16", "path"),
    [
        ({}, contract.POSE_MODEL, False, True, None),
        ({"POSE_USE_TENSORRT": "true", "POSE_TENSORRT_FP16": "0"}, contract.POSE_MODEL, True, False, None),
        ({"POSE_TENSORRT_ENGINE_PATH": "/cache/p.plan"}, contract.POSE_MODEL, False, True, "/cache/p.plan"),
        ({"THREAT_USE_TENSORRT": "1"}, contract.THREAT_MODEL, True, True, None),
        ({"THREAT_DETECTOR_USE_TENSORRT": "yes"}, contract.THREAT_MODEL, True, True, None),
        (
            {"THREAT_USE_TENSORRT": "on", "THREAT_DETECTOR_USE_TENSORRT": "TRUE"},
            contract.THREAT_MODEL,
            True,
            True,
            None,
        ),
        ({"THREAT_TENSORRT_FP16": "false"}, contract.THREAT_MODEL, False, False, None),
        ({"POSE_USE_TENSORRT": "1"}, contract.REID_MODEL, False, True, None),
    ],
)
def test_tensorrt_settings_from_env_reads_original_variables(env, model, use, fp16, path):
    s = tp.tensorrt_settings_from_env(model, env)
    assert (s.use_tensorrt, s.fp16, s.engine_path) == (use, fp16, None if path is None else tp.Path(path))
    assert s.cache_dir == tp.DEFAULT_CACHE_DIR


@pytest.mark.parametrize(
    ("env", "match"),
    [
        ({"POSE_USE_TENSORRT": "maybe"}, "not a boolean"),
        ({"THREAT_USE_TENSORRT": "1", "THREAT_DETECTOR_USE_TENSORRT": "0"}, "conflicting"),
    ],
)
def test_tensorrt_settings_from_env_raises_when_values_are_bad(env, match):
    model = contract.THREAT_MODEL if "THREAT_USE_TENSORRT" in env else contract.POSE_MODEL
    with pytest.raises(ValueError, match=match):
        tp.tensorrt_settings_from_env(model, env)


def test_tensorrt_settings_from_env_uses_cache_dir_override(tmp_path):
    s = tp.tensorrt_settings_from_env(contract.POSE_MODEL, {tp.CACHE_DIR_ENV: str(tmp_path)})
    assert s.cache_dir == tmp_path


def test_compare_outputs_applies_range_relative_tolerance():
    want = {"out": np.array([[0.0, 640.0]], dtype=np.float32)}
    ok, stats, _ = tp.compare_outputs({"out": want["out"] + 5.0}, want, atol=1e-2, rtol=2e-2)
    assert ok and stats["out"]["limit"] == pytest.approx(12.81)
    ok, _, msg = tp.compare_outputs({"out": want["out"] + 20.0}, want, atol=1e-2, rtol=2e-2)
    assert not ok and "max |diff|" in msg
    ok, _, msg = tp.compare_outputs({"out": np.full((1, 2), np.nan)}, want, atol=1, rtol=1)
    assert not ok and "non-finite" in msg


def test_verify_plan_compares_runner_with_reference_at_profile_ends(onnx_file, tmp_path):
    req = _request(onnx_file, tmp_path, profile=tp.BatchProfile(2, 3, 5))
    seen = []

    def runner(plan, x, name):
        seen.append(x.shape[0])
        return {"output0": x[:, :1, :1, 0].astype(np.float32)}

    def reference(path, x, name):
        return {"output0": x[:, :1, :1, 0].astype(np.float32) + 0.001}

    report = tp.verify_plan(b"plan", req, runner=runner, reference=reference)
    assert report.passed and seen == [2, 5] and report.batch_sizes == (2, 5)


def test_cli_plan_check_only_reports_each_model_without_gpu(tmp_path, capsys):
    for name in contract.INFERENCE_MODELS:
        path = cli.onnx_path_for(tmp_path / "repo", name)
        path.parent.mkdir(parents=True)
        path.write_bytes(name.encode())
    code = cli.main(
        [
            "plan",
            "--check-only",
            "--repository",
            str(tmp_path / "repo"),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--gpu-cc",
            "8.6",
            "--trt-version",
            "10.5.0",
        ]
    )
    out = capsys.readouterr().out.strip().splitlines()
    assert code == cli.PLAN_CHECK_STALE_EXIT and len(out) == 3
    assert all("would build: no plan yet" in line and "model.sm86.plan" in line for line in out)


def test_cli_plan_rejects_assumed_device_when_building(tmp_path, capsys):
    with pytest.raises(SystemExit, match="only make sense with --check-only"):
        cli.main(["plan", "--gpu-cc", "8.6", "--trt-version", "10.5.0", "--repository", str(tmp_path)])


def test_cli_registers_subcommands_when_parser_is_built():
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert {"onnx", "fetch", "plan"} <= set(sub.choices)
