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


def write_tiny_onnx(path, *, version="v1", qdq=False):
    """A real (tiny) ONNX file: the plan logic hashes it and looks for Q/DQ nodes in its graph."""
    from onnx import TensorProto, helper

    if qdq:
        nodes = [
            helper.make_node("Cast", ["images"], ["f"], to=TensorProto.FLOAT),
            helper.make_node("QuantizeLinear", ["f", "scale", "zero"], ["q"]),
            helper.make_node("DequantizeLinear", ["q", "scale", "zero"], ["output0"]),
        ]
        inits = [
            helper.make_tensor("scale", TensorProto.FLOAT, [], [0.1]),
            helper.make_tensor("zero", TensorProto.INT8, [], [0]),
        ]
    else:
        nodes, inits = [helper.make_node("Cast", ["images"], ["output0"], to=TensorProto.FLOAT)], []
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("images", TensorProto.UINT8, ["N", 640, 640, 3])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["N", 640, 640, 3])],
        initializer=inits,
        doc_string=version,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    return path


@pytest.fixture
def onnx_file(tmp_path):
    return write_tiny_onnx(tmp_path / "repo" / contract.POSE_MODEL / "1" / "model.onnx")


def _request(onnx_file, tmp_path, **kwargs):
    return tp.make_plan_request(contract.POSE_MODEL, onnx_file, device=A400, cache_dir=tmp_path / "cache", **kwargs)


def _fake_builder(request):
    return b"PLAN:" + request.precision.encode()


def _passing_verifier(plan, request):
    return tp.VerificationReport(True, request.precision, (1, 8), {"boxes": 2.0}, {"output0.boxes@batch1": {}})


def _failing_verifier(plan, request):
    return tp.VerificationReport(False, request.precision, (1, 8), {"boxes": 2.0}, {}, {}, "batch 8: output0 too far")


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
        ({"precision": "int4"}, ValueError, "precision must be one of"),
        ({"precision": "int8"}, ValueError, "INT8 plans need a QDQ ONNX"),
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
        write_tiny_onnx(onnx_file, version="v2")
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


def test_cli_plan_check_only_reports_each_model_without_gpu(tmp_path, capsys):
    for name in contract.INFERENCE_MODELS:
        write_tiny_onnx(cli.onnx_path_for(tmp_path / "repo", name), version=name)
    code = cli.main(
        [
            "plan",
            "--model",
            contract.POSE_MODEL,
            "--model",
            contract.THREAT_MODEL,
            "--model",
            contract.REID_MODEL,
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


# --- verification per channel group, on real letterboxed photos -----------------------------------

ANCHORS = 8400


def _synthetic_head(model_name, batch, seed=0):
    """A raw YOLOv8 head output with realistic ranges: 0-640 px boxes, mostly low scores and a few
    confident, well separated detections per image (the reference the injected runner perturbs)."""
    rng = np.random.default_rng(seed)
    channels = contract.POSE_RAW_CHANNELS if model_name == contract.POSE_MODEL else 4 + 3
    out = np.zeros((batch, channels, ANCHORS), dtype=np.float32)
    out[:, 0:2] = rng.uniform(20, 620, (batch, 2, ANCHORS))
    out[:, 2:4] = rng.uniform(10, 60, (batch, 2, ANCHORS))
    out[:, 4:] = rng.uniform(0.0, 0.04, (batch, channels - 4, ANCHORS))
    for b in range(batch):
        for k, (cx, cy) in enumerate([(100, 100), (320, 320), (540, 200)]):
            a = 1000 * (k + 1)
            out[b, 0:4, a] = (cx, cy, 80, 160)
            out[b, 4, a] = 0.9 - 0.1 * k
    if model_name == contract.POSE_MODEL:
        kpt = out[:, 5:].reshape(batch, contract.NUM_KEYPOINTS, 3, ANCHORS)
        kpt[:, :, :2] = rng.uniform(0, 640, (batch, contract.NUM_KEYPOINTS, 2, ANCHORS))
        kpt[:, :, 2] = rng.uniform(0, 1, (batch, contract.NUM_KEYPOINTS, ANCHORS))
    return out


DEFAULT_PROFILE = tp.BatchProfile(1, 4, 8)


def _verify(model_name, tmp_path, perturb, *, profile=DEFAULT_PROFILE):
    onnx = write_tiny_onnx(tmp_path / "repo" / model_name / "1" / "model.onnx")
    request = tp.make_plan_request(model_name, onnx, device=A400, cache_dir=tmp_path / "cache", profile=profile)
    seen = []

    def reference(path, x, name):
        assert path == onnx and name == request.input_name
        seen.append(x)
        return {contract.RAW_OUTPUT: _synthetic_head(model_name, x.shape[0])}

    def runner(plan, x, name):
        return {contract.RAW_OUTPUT: perturb(_synthetic_head(model_name, x.shape[0]))}

    return tp.verify_plan(b"plan", request, runner=runner, reference=reference), seen


def _score_rows(model_name):
    return slice(4, 5) if model_name == contract.POSE_MODEL else slice(4, None)


@pytest.mark.parametrize("model_name", [contract.POSE_MODEL, contract.THREAT_MODEL])
def test_verify_plan_fails_when_scores_are_off_by_0_3(tmp_path, model_name):
    def shift_scores(raw):
        raw[:, _score_rows(model_name)] += 0.3
        return raw

    report, _ = _verify(model_name, tmp_path, shift_scores)
    assert not report.passed and "scores: max |diff| 0.3" in report.message
    assert report.groups["output0.scores@batch1"]["max_abs_diff"] == pytest.approx(0.3, abs=1e-5)
    assert report.groups["output0.boxes@batch8"]["max_abs_diff"] == 0.0


@pytest.mark.parametrize("model_name", [contract.POSE_MODEL, contract.THREAT_MODEL])
def test_verify_plan_passes_when_noise_is_fp16_sized(tmp_path, model_name):
    rng = np.random.default_rng(7)

    def fp16_noise(raw):
        raw[:, 0:4] += rng.uniform(-0.25, 0.25, raw[:, 0:4].shape).astype(np.float32)
        raw[:, 4:] += rng.uniform(-0.002, 0.002, raw[:, 4:].shape).astype(np.float32)
        return raw

    report, seen = _verify(model_name, tmp_path, fp16_noise)
    assert report.passed, report.message
    assert [x.shape[0] for x in seen] == [1, 8] and report.batch_sizes == (1, 8)
    boxes = report.groups["output0.boxes@batch8"]
    assert 0.2 < boxes["max_abs_diff"] <= 0.25 and boxes["limit"] == 2.0
    det = report.detections["output0@batch8"]
    assert det["reference_detections"] == det["plan_detections"] == 8 * 3 and det["max_box_diff_px"] <= 0.5
    assert report.to_dict()["batch_sizes"] == [1, 8]


def test_verify_plan_feeds_packaged_letterboxed_photos_at_profile_ends(tmp_path):
    _, seen = _verify(contract.THREAT_MODEL, tmp_path, lambda raw: raw, profile=tp.BatchProfile(2, 3, 5))
    images = tp.load_samples()["images"]
    assert [x.shape for x in seen] == [(2, 640, 640, 3), (5, 640, 640, 3)]
    assert seen[0].dtype == np.uint8 and np.array_equal(seen[1][0], images[0]) and np.array_equal(seen[1][1], images[1])
    assert np.array_equal(seen[1][2], images[0][:, ::-1])  # mirror images fill the batch
    # letterboxed: 114 grey bars (zidane.jpg is landscape: bars on top and bottom)
    assert (images[1][:100] == 114).all() and (images[1][-100:] == 114).all() and images[1][320].std() > 10


def test_compare_detections_fails_when_a_confident_box_moves_3px():
    want = _synthetic_head(contract.THREAT_MODEL, 1)
    got = want.copy()
    got[0, 0, 1000] += 3.0  # the best box, 3 px to the right
    stats, problems = tp.compare_detections(contract.THREAT_MODEL, got, want)
    assert problems and "3.00 px" in problems[0] and stats["max_box_diff_px"] == pytest.approx(3.0)


def test_compare_detections_fails_when_plan_loses_two_detections():
    want = _synthetic_head(contract.POSE_MODEL, 1)
    got = want.copy()
    got[0, 4, [1000, 2000]] = 0.0
    stats, problems = tp.compare_detections(contract.POSE_MODEL, got, want)
    assert problems and "1 detections vs 3" in problems[0] and stats["unmatched"] == 2


@pytest.mark.parametrize(("angle", "passed"), [(0.01, True), (0.1, False)])
def test_verify_plan_checks_osnet_cosine_per_embedding(tmp_path, angle, passed):
    onnx = write_tiny_onnx(tmp_path / "osnet.onnx")
    request = tp.make_plan_request(
        contract.REID_MODEL, onnx, device=A400, cache_dir=tmp_path / "c", profile=tp.BatchProfile(1, 8, 32)
    )
    rng = np.random.default_rng(0)
    base = rng.normal(size=(32, contract.EMBEDDING_DIMENSION))
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    other = rng.normal(size=base.shape)
    other -= np.sum(other * base, axis=1, keepdims=True) * base
    other /= np.linalg.norm(other, axis=1, keepdims=True)
    turned = np.cos(angle) * base + np.sin(angle) * other  # cosine to base = cos(angle)

    def reference(path, x, name):
        assert x.shape[1:] == (256, 128, 3)
        return {contract.EMBEDDINGS: base[: x.shape[0]].astype(np.float32)}

    report = tp.verify_plan(
        b"plan", request, runner=lambda p, x, n: {contract.EMBEDDINGS: turned[: x.shape[0]]}, reference=reference
    )
    assert report.passed is passed and report.batch_sizes == (1, 32)
    assert report.groups["embeddings.cosine@batch32"]["min"] == pytest.approx(np.cos(angle), abs=1e-6)


def test_channel_groups_split_pose_head_into_boxes_scores_keypoints():
    groups = tp.channel_groups(contract.POSE_MODEL, 56)
    assert list(groups["boxes"]) == [0, 1, 2, 3] and list(groups["scores"]) == [4]
    assert list(groups["keypoint_xy"][:4]) == [5, 6, 8, 9] and list(groups["keypoint_conf"][:2]) == [7, 10]
    assert sum(len(v) for v in groups.values()) == 56
    assert list(tp.channel_groups(contract.THREAT_MODEL, 84)["scores"]) == list(range(4, 84))
    with pytest.raises(ValueError, match="expected 56"):
        tp.channel_groups(contract.POSE_MODEL, 55)


# --- INT8 (explicit quantisation of a QDQ ONNX) ----------------------------------------------------


def test_make_plan_request_builds_int8_when_onnx_has_qdq_nodes(tmp_path):
    qdq = write_tiny_onnx(tmp_path / "qdq.onnx", qdq=True)
    assert tp.onnx_has_qdq(qdq) and not tp.onnx_has_qdq(write_tiny_onnx(tmp_path / "f.onnx"))
    request = tp.make_plan_request(contract.POSE_MODEL, qdq, device=A400, cache_dir=tmp_path / "c")
    assert request.precision == "int8"
    out = tp.ensure_plan(request, A400, builder=_fake_builder, verifier=_passing_verifier)
    assert tp.read_sidecar(tp.sidecar_path(out.plan_path)).precision == "int8"


# --- device facts without torch ---------------------------------------------------------------------


def _fake_nvidia_smi(tmp_path, body):
    exe = tmp_path / "bin" / "nvidia-smi"
    exe.parent.mkdir(parents=True, exist_ok=True)
    exe.write_text("#!/bin/sh\n" + body)
    exe.chmod(0o755)
    return exe


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ('echo "8.6, NVIDIA RTX A400"\n', None),
        ('echo "NVIDIA-SMI has failed because it couldn\'t communicate with the NVIDIA driver."\nexit 9\n', "driver"),
        ('echo "No devices were found"\nexit 6\n', "No devices were found"),
        ('echo "[N/A], NVIDIA Old"\n', "no compute capability"),
    ],
)
def test_query_gpu_reads_nvidia_smi_when_driver_answers_or_not(tmp_path, monkeypatch, body, match):
    monkeypatch.setenv(tp.NVIDIA_SMI_ENV, str(_fake_nvidia_smi(tmp_path, body)))
    if match is None:
        assert tp.query_gpu() == ((8, 6), "NVIDIA RTX A400")
    else:
        with pytest.raises(tp.DeviceUnavailableError, match=match):
            tp.query_gpu()


_NO_TORCH = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"torch", "torchvision", "ultralytics", "tensorrt"}:
            raise ImportError(f"{name} is blocked in this test")
        return None
sys.meta_path.insert(0, Block())
from enrichment_export import cli, repository, tensorrt_plan
assert not {"torch", "ultralytics"} & set(sys.modules), sorted(m for m in sys.modules if m.startswith("torch"))
sys.exit(cli.main(sys.argv[1:]))
"""


@pytest.mark.parametrize(
    ("smi", "message"),
    [
        (None, "no NVIDIA driver: nvidia-smi is not on PATH"),
        ('echo "8.6, NVIDIA RTX A400"\n', "TensorRT is not installed"),
        ('echo "NVIDIA-SMI has failed because it couldn\'t communicate with the NVIDIA driver."\nexit 9\n', "driver"),
    ],
)
def test_cli_plan_reports_one_line_when_torch_unimportable_and_no_gpu(tmp_path, smi, message):
    import subprocess
    import sys

    for name in (contract.POSE_MODEL, contract.THREAT_MODEL):
        write_tiny_onnx(tmp_path / "onnx" / f"{name}.onnx")
    env = {k: v for k, v in os.environ.items() if k != tp.NVIDIA_SMI_ENV}
    env["PATH"] = str(tmp_path / "bin")  # only the fake nvidia-smi, even on a GPU host
    if smi is not None:
        _fake_nvidia_smi(tmp_path, smi)
    args = ["plan", "--repository", str(tmp_path / "onnx"), "--cache-dir", str(tmp_path / "cache")]
    proc = subprocess.run(
        [sys.executable, "-c", _NO_TORCH, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith("enrichment-export plan: error: ") and message in lines[0]


def test_cli_plan_goes_on_after_a_failing_model_and_records_it(tmp_path, capsys):
    write_tiny_onnx(tmp_path / "onnx" / f"{contract.THREAT_MODEL}.onnx")  # flat layout; no pose ONNX
    args = cli.build_parser().parse_args(
        ["plan", "--repository", str(tmp_path / "onnx"), "--cache-dir", str(tmp_path / "cache")]
    )
    code = cli._run_plan(args, device=A400, environ={})
    err = capsys.readouterr().err
    assert code == 1
    assert f"FAILED {contract.POSE_MODEL}: no ONNX file" in err and f"{contract.POSE_MODEL}.onnx or" in err
    # the threat model was still attempted: no TensorRT here, recorded per model
    assert f"FAILED {contract.THREAT_MODEL}: TensorRT is not installed" in err
    for name in (contract.POSE_MODEL, contract.THREAT_MODEL):
        record = tp.read_build_record(tmp_path / "cache" / name)
        assert record["status"] == "failed" and record["model_name"] == name


def test_cli_plan_check_only_finds_flat_and_repository_layouts(tmp_path, capsys):
    write_tiny_onnx(tmp_path / "onnx" / f"{contract.POSE_MODEL}.onnx")
    write_tiny_onnx(tmp_path / "onnx" / contract.THREAT_MODEL / "1" / "model.onnx")
    code = cli.main(
        [
            *("plan", "--check-only", "--gpu-cc", "8.6", "--trt-version", "10.5.0"),
            *("--repository", str(tmp_path / "onnx"), "--cache-dir", str(tmp_path / "cache")),
        ]
    )
    out = capsys.readouterr().out.strip().splitlines()
    assert code == cli.PLAN_CHECK_STALE_EXIT and len(out) == 2  # the two detectors by default, not OSNet
    assert out[0].startswith(f"{contract.POSE_MODEL}: ") and out[1].startswith(f"{contract.THREAT_MODEL}: ")
