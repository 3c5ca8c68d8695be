"""Repository builder: configs from the contract for every target, manifest, fallback, paths, committed copy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from google.protobuf import text_format
from onnx import TensorProto, helper
from tritonclient.grpc import model_config_pb2 as mc

from enrichment_export import repository as rb
from enrichment_export import tensorrt_plan as tp
from enrichment_light.core import contract as ct
from enrichment_light.core.errors import InvalidModelPathError

ROOT = Path(__file__).resolve().parents[2]
NAMES = ["gun", "knife", "bat", "person"]


def _fake_onnx(path: Path, model: str, names: list[str] | None = None, *, static_hw: bool = False) -> Path:
    """A tiny ONNX with the contract's tensor names, output dims and Ultralytics-style metadata."""
    spec = ct.model_spec(model)
    inp, out = spec.inputs[0], spec.outputs[0]
    in_dims = [("height", "width")[i] if d == -1 and not static_hw else 640 if d == -1 else d
               for i, d in enumerate(inp.shape)]  # fmt: skip
    if model == ct.POSE_MODEL:
        out_dims = [ct.POSE_RAW_CHANNELS, ct.NUM_ANCHORS_640]
    elif model == ct.THREAT_MODEL:
        out_dims = [4 + len(names or NAMES), ct.NUM_ANCHORS_640]
    else:
        out_dims = [ct.EMBEDDING_DIMENSION]
    graph = helper.make_graph(
        [helper.make_node("Identity", ["c"], [out.name])],
        model,
        [helper.make_tensor_value_info(inp.name, TensorProto.UINT8, ["batch", *in_dims])],
        [helper.make_tensor_value_info(out.name, TensorProto.FLOAT, ["batch", *out_dims])],
        initializer=[helper.make_tensor("c", TensorProto.FLOAT, [1], [0.0])],
    )
    proto = helper.make_model(graph)
    if model == ct.THREAT_MODEL:
        helper.set_model_props(proto, {"names": json.dumps({str(i): n for i, n in enumerate(names or NAMES)})})
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, str(path))
    return path


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    art = tmp_path / "artifacts"
    for name in ct.INFERENCE_MODELS:
        _fake_onnx(art / f"{name}.onnx", name)
    return art


A400 = tp.DeviceInfo((8, 6), "NVIDIA RTX A400", "10.5.0.18")


def _build(tmp_path: Path, artifacts: Path, target: str, **kw) -> rb.BuildResult:
    if target == "tensorrt":
        kw.setdefault("device", A400)
    return rb.build_repository(tmp_path / f"repo-{target}", target=target, artifacts=artifacts,
                               allowed_roots=[tmp_path], **kw)  # fmt: skip


def _parse(path: Path) -> mc.ModelConfig:
    return text_format.Parse(path.read_text(encoding="utf-8"), mc.ModelConfig())


def _write_plan(
    plans: Path, model: str, onnx_path: Path, sm: str = "86", sha: str | None = None, **sidecar_fields
) -> None:
    """A plan file and the sidecar tensorrt_plan.ensure_plan would write for it."""
    folder = plans / model
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"model.sm{sm}.plan").write_bytes(b"plan")
    sidecar = tp.PlanSidecar(
        compute_capability=f"{sm[:-1]}.{sm[-1]}",
        gpu_name="NVIDIA RTX A400",
        tensorrt_version="10.5.0.18",
        precision="fp16",
        profile={"min": 1, "opt": 4, "max": 8},
        onnx_sha256=sha or rb._sha256(onnx_path),
        verification={"passed": True},
    ).to_dict()
    sidecar.update(sidecar_fields)
    (folder / f"model.sm{sm}.plan.json").write_text(json.dumps(sidecar))


# --------------------------------------------------------------------------------------------- contract


@pytest.mark.parametrize("target", rb.TARGETS)
def test_build_repository_configs_agree_with_contract_when_built_for_target(tmp_path, artifacts, target):
    result = _build(tmp_path, artifacts, target)
    for name in ct.ALL_MODELS:
        spec = ct.model_spec(name)
        cfg = _parse(result.out_dir / name / "config.pbtxt")
        assert cfg.name == name
        assert cfg.max_batch_size == spec.max_batch_size
        assert [i.name for i in cfg.input] == [t.name for t in spec.inputs]
        assert [o.name for o in cfg.output] == [t.name for t in spec.outputs]
        for got, want in zip(list(cfg.input) + list(cfg.output), spec.inputs + spec.outputs, strict=True):
            assert mc.DataType.Name(got.data_type) == want.config_dtype, (name, got.name)
            dims = list(got.dims)
            assert len(dims) == len(want.shape)
            assert all(w in (-1, g) for g, w in zip(dims, want.shape, strict=True)), (name, got.name, dims)
        for inp, tensor in zip(cfg.input, spec.inputs, strict=True):
            assert inp.optional == tensor.optional
        if spec.kind == "ensemble" and rb.is_fused(name, target, rb.BuildOptions()):
            assert cfg.backend == "python" and cfg.instance_group[0].count >= 1
            assert (result.out_dir / name / "1" / "model.py").is_file()
            assert (result.out_dir / name / "1" / "model.onnx").is_file()
        elif spec.kind == "ensemble":
            assert cfg.platform == "ensemble"
            assert (result.out_dir / name / "1").is_dir()
        else:
            assert cfg.instance_group[0].count >= 1
        if spec.max_batch_size > 0 and spec.kind != "ensemble":
            assert cfg.HasField("dynamic_batching"), name
        if spec.kind == "inference":
            assert cfg.model_warmup, name


def test_build_repository_uses_native_backends_when_target_is_onnx(tmp_path, artifacts):
    result = _build(tmp_path, artifacts, "onnx")
    for name in ct.INFERENCE_MODELS:
        cfg = _parse(result.out_dir / name / "config.pbtxt")
        assert cfg.platform == "onnxruntime_onnx"
        assert cfg.instance_group[0].kind == mc.ModelInstanceGroup.KIND_GPU
        assert (result.out_dir / name / "1" / "model.onnx").is_file()
        assert not (result.out_dir / name / "1" / "model.py").exists()
    pose = _parse(result.out_dir / ct.POSE_MODEL / "config.pbtxt")
    assert list(pose.output[0].dims) == [ct.POSE_RAW_CHANNELS, ct.NUM_ANCHORS_640]  # exact, as the backend checks
    gpu_profile = json.loads((ROOT / "deploy" / "gpu-profile.json").read_text())
    assert list(pose.dynamic_batching.preferred_batch_size) == gpu_profile[ct.POSE_MODEL]["preferred_batch_sizes"]


def test_build_repository_runs_onnx_in_python_backend_when_target_is_cpu(tmp_path, artifacts):
    result = _build(tmp_path, artifacts, "cpu", options=rb.BuildOptions(detector_intra_op_threads=3))
    cfg = _parse(result.out_dir / ct.POSE_MODEL / "config.pbtxt")
    assert cfg.backend == "python"
    assert cfg.parameters["intra_op_threads"].string_value == "3"
    assert cfg.parameters["onnx_file"].string_value == "model.onnx"
    for name in ct.INFERENCE_MODELS:
        assert (result.out_dir / name / "1" / "model.py").read_bytes() == (
            ROOT / "model_repository" / ct.POSE_MODEL / "1" / "model.py"
        ).read_bytes()


# --------------------------------------------------------------------------------------------- parameters


def test_build_repository_writes_class_names_from_onnx_metadata_when_none_are_given(tmp_path, artifacts):
    result = _build(tmp_path, artifacts, "cpu")
    for name, key in ((ct.THREAT_POSTPROCESS, "class_names"), (ct.ENRICH, "threat_class_names")):
        cfg = _parse(result.out_dir / name / "config.pbtxt")
        assert json.loads(cfg.parameters[key].string_value) == NAMES
    assert result.manifest["threat_class_names"] == NAMES


def test_build_repository_rejects_class_names_when_count_differs_from_onnx(tmp_path, artifacts):
    with pytest.raises(ValueError, match="4 classes but 2 class names"):
        _build(tmp_path, artifacts, "cpu", options=rb.BuildOptions(class_names=("gun", "knife")))


def test_build_repository_writes_thresholds_and_rules_when_options_override_them(tmp_path, artifacts):
    options = rb.BuildOptions(pose_conf=0.3, threat_conf=0.6, iou=0.5, pose_rules={"running_ratio": 0.4})
    result = _build(tmp_path, artifacts, "cpu", options=options)
    pose = _parse(result.out_dir / ct.POSE_POSTPROCESS / "config.pbtxt").parameters
    assert pose["conf_threshold"].string_value == "0.3"
    assert pose["iou_threshold"].string_value == "0.5"
    assert pose["rule_running_ratio"].string_value == "0.4"
    threat = _parse(result.out_dir / ct.THREAT_POSTPROCESS / "config.pbtxt").parameters
    assert threat["conf_threshold"].string_value == "0.6"
    enrich = _parse(result.out_dir / ct.ENRICH / "config.pbtxt").parameters
    assert enrich["pose_conf_threshold"].string_value == "0.3"
    assert enrich["threat_conf_threshold"].string_value == "0.6"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"pose_conf": 1.5}, "pose_conf"),
        ({"iou": -0.1}, "iou"),
        ({"class_names": ()}, "class_names"),
        ({"pose_rules": {"no_such_rule": 1.0}}, "no_such_rule"),
        ({"max_pixels": 0}, "max_pixels"),
        ({"detector_intra_op_threads": -1}, "detector_intra_op_threads"),
        ({"fused_concurrent_runs": 0}, "fused_concurrent_runs"),
        ({"cpu_tuning": {"no_such_model": {"instances": 2}}}, "no_such_model"),
        ({"cpu_tuning": {"pose": {"no_such_field": 2}}}, "no_such_field"),
        ({"cpu_tuning": {"pose": {"instances": 9}}}, "instances"),
        ({"cpu_tuning": {"pose": {"preferred_batch_sizes": [16]}}}, "batch sizes"),
    ],
)
def test_build_options_raise_value_error_when_value_is_invalid(kwargs, message):
    with pytest.raises(ValueError, match=message):
        rb.BuildOptions(**kwargs)


# --------------------------------------------------------------------------------------------- manifest, fallback


def test_manifest_records_target_backends_and_hashes_when_repository_is_built(tmp_path, artifacts):
    result = _build(tmp_path, artifacts, "onnx")
    manifest = rb.read_manifest(result.out_dir)
    assert manifest == result.manifest
    assert manifest["target"] == "onnx"
    assert manifest["schema_version"] == rb.MANIFEST_SCHEMA_VERSION
    assert set(manifest["models"]) == set(ct.ALL_MODELS)
    for name in ct.INFERENCE_MODELS:
        entry = manifest["models"][name]
        assert entry["backend"] == "onnxruntime"
        assert entry["triton_backend"] == "onnxruntime_onnx"
        assert entry["source"]["sha256"] == rb._sha256(artifacts / f"{name}.onnx")
    assert manifest["models"][ct.POSE_ENSEMBLE]["backend"] == "ensemble"
    assert manifest["models"][ct.PREPROCESS]["backend"] == "python"
    assert "onnxruntime" in manifest["versions"]


def test_tensorrt_target_falls_back_to_onnxruntime_when_no_plan_exists(tmp_path, artifacts, caplog):
    result = _build(tmp_path, artifacts, "tensorrt", plans=tmp_path / "plans")
    for name in (ct.POSE_MODEL, ct.THREAT_MODEL):
        entry = result.manifest["models"][name]
        assert entry["backend"] == "onnxruntime"
        assert entry["fallback"]["from"] == "tensorrt"
        assert _parse(result.out_dir / name / "config.pbtxt").platform == "onnxruntime_onnx"
    assert "no usable TensorRT plan" in caplog.text and "falling back to onnxruntime_onnx" in caplog.text
    assert result.manifest["models"][ct.REID_MODEL]["backend"] == "onnxruntime"


def test_tensorrt_target_uses_cc_model_filenames_when_plan_matches_onnx(tmp_path, artifacts):
    plans = tmp_path / "plans"
    _write_plan(plans, ct.POSE_MODEL, artifacts / f"{ct.POSE_MODEL}.onnx", "86")
    _write_plan(plans, ct.POSE_MODEL, artifacts / f"{ct.POSE_MODEL}.onnx", "89")
    result = _build(tmp_path, artifacts, "tensorrt", plans=plans)
    cfg = _parse(result.out_dir / ct.POSE_MODEL / "config.pbtxt")
    assert cfg.platform == "tensorrt_plan"
    assert dict(cfg.cc_model_filenames) == {"8.6": "model.sm86.plan"}  # only the serving GPU's plan
    assert cfg.optimization.cuda.graphs  # gpu-profile.json asks for CUDA graphs
    assert (result.out_dir / ct.POSE_MODEL / "1" / "model.sm86.plan").is_file()
    assert not (result.out_dir / ct.POSE_MODEL / "1" / "model.sm89.plan").exists()
    entry = result.manifest["models"][ct.POSE_MODEL]
    assert entry["backend"] == "tensorrt" and entry["plan_precision"] == "fp16"
    assert "this GPU (NVIDIA RTX A400) is 8.6" in entry["rejected_plans"]["model.sm89.plan"]
    assert result.manifest["models"][ct.THREAT_MODEL]["backend"] == "onnxruntime"  # no plan for it


def test_tensorrt_target_falls_back_when_plan_sidecar_names_another_onnx(tmp_path, artifacts):
    plans = tmp_path / "plans"
    _write_plan(plans, ct.THREAT_MODEL, artifacts / f"{ct.THREAT_MODEL}.onnx", sha="0" * 64)
    result = _build(tmp_path, artifacts, "tensorrt", plans=plans)
    entry = result.manifest["models"][ct.THREAT_MODEL]
    assert entry["backend"] == "onnxruntime"
    assert "stale" in entry["fallback"]["reason"]


def test_osnet_gets_tensorrt_accelerator_when_option_is_set(tmp_path, artifacts):
    result = _build(tmp_path, artifacts, "tensorrt", options=rb.BuildOptions(osnet_tensorrt_accelerator=True))
    cfg = _parse(result.out_dir / ct.REID_MODEL / "config.pbtxt")
    (acc,) = cfg.optimization.execution_accelerators.gpu_execution_accelerator
    assert acc.name == "tensorrt"
    params = dict(acc.parameters)
    assert params["precision_mode"] == "FP16" and params["trt_engine_cache_enable"] == "1"
    # engines cached on the server's writable volume, one folder per TensorRT version and GPU
    cache = "/cache/onnxruntime/trt10.5.0.18-sm86/osnet_x0_25"
    assert params["trt_engine_cache_path"] == params["trt_timing_cache_path"] == cache
    # the profile covers every batch the config allows (1..32), so batch 16/32 never rebuilds
    assert params["trt_profile_min_shapes"] == "crops:1x256x128x3"
    assert params["trt_profile_max_shapes"] == f"crops:{ct.model_spec(ct.REID_MODEL).max_batch_size}x256x128x3"
    assert ct.model_spec(ct.REID_MODEL).max_batch_size == 32
    assert params["trt_profile_opt_shapes"] == "crops:8x256x128x3"


@pytest.mark.parametrize(
    ("sidecar", "reason"),
    [
        ({"tensorrt_version": "10.3.0.26"}, "built with TensorRT 10.3.0.26, the server's TensorRT is 10.5.0.18"),
        (
            {"profile": {"min": 1, "opt": 2, "max": 4}},
            "batch profile 1..4 does not cover the config's batch sizes 1..8",
        ),
        ({"profile": {"min": 2, "opt": 4, "max": 8}}, "batch profile 2..8 does not cover"),
        ({"compute_capability": "8.9"}, "sidecar says compute capability '8.9' but the file is named for 8.6"),
        ({"verification": {"passed": False, "message": "scores off"}}, "failed verification: scores off"),
    ],
)
def test_tensorrt_target_falls_back_when_plan_does_not_fit_the_server(tmp_path, artifacts, caplog, sidecar, reason):
    plans = tmp_path / "plans"
    _write_plan(plans, ct.THREAT_MODEL, artifacts / f"{ct.THREAT_MODEL}.onnx", **sidecar)
    _write_plan(plans, ct.POSE_MODEL, artifacts / f"{ct.POSE_MODEL}.onnx")
    result = _build(tmp_path, artifacts, "tensorrt", plans=plans)
    entry = result.manifest["models"][ct.THREAT_MODEL]
    assert entry["backend"] == "onnxruntime" and reason in entry["fallback"]["reason"]
    assert reason in entry["rejected_plans"]["model.sm86.plan"]
    assert reason in caplog.text  # and in the log
    assert _parse(result.out_dir / ct.THREAT_MODEL / "config.pbtxt").platform == "onnxruntime_onnx"
    assert result.manifest["models"][ct.POSE_MODEL]["backend"] == "tensorrt"  # per model


def test_tensorrt_target_falls_back_with_reason_when_plan_is_for_another_gpu(tmp_path, artifacts):
    plans = tmp_path / "plans"
    _write_plan(plans, ct.POSE_MODEL, artifacts / f"{ct.POSE_MODEL}.onnx", "89")
    result = _build(tmp_path, artifacts, "tensorrt", plans=plans)
    reason = result.manifest["models"][ct.POSE_MODEL]["fallback"]["reason"]
    assert "built for compute capability 8.9, this GPU (NVIDIA RTX A400) is 8.6" in reason


def test_tensorrt_target_records_last_build_failure_when_falling_back(tmp_path, artifacts):
    plans = tmp_path / "plans"
    tp.write_build_record(plans / ct.POSE_MODEL, ct.POSE_MODEL, status="failed", reason="scores: max |diff| 0.3")
    result = _build(tmp_path, artifacts, "tensorrt", plans=plans)
    reason = result.manifest["models"][ct.POSE_MODEL]["fallback"]["reason"]
    assert "last build failed: scores: max |diff| 0.3" in reason


def test_tensorrt_target_falls_back_when_gpu_cannot_be_queried(tmp_path, artifacts, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))  # no nvidia-smi
    monkeypatch.delenv(tp.NVIDIA_SMI_ENV, raising=False)
    plans = tmp_path / "plans"
    _write_plan(plans, ct.POSE_MODEL, artifacts / f"{ct.POSE_MODEL}.onnx")
    result = _build(tmp_path, artifacts, "tensorrt", plans=plans, device=None)
    reason = result.manifest["models"][ct.POSE_MODEL]["fallback"]["reason"]
    assert reason.startswith("cannot check plans against the serving GPU: no NVIDIA driver")


def test_tensorrt_target_refuses_before_writing_when_fallback_is_none(tmp_path, artifacts):
    plans = tmp_path / "plans"
    _write_plan(plans, ct.POSE_MODEL, artifacts / f"{ct.POSE_MODEL}.onnx")
    with pytest.raises(ValueError, match=r"fallback 'none': no usable TensorRT plan for yolov8n_threat \(no plan dir"):
        _build(tmp_path, artifacts, "tensorrt", plans=plans, fallback="none")
    assert not (tmp_path / "repo-tensorrt").exists()


def test_find_onnx_accepts_flat_and_repository_layouts(tmp_path):
    flat = _fake_onnx(tmp_path / "a" / f"{ct.POSE_MODEL}.onnx", ct.POSE_MODEL)
    nested = _fake_onnx(tmp_path / "b" / ct.POSE_MODEL / "1" / "model.onnx", ct.POSE_MODEL)
    assert rb.find_onnx(tmp_path / "a", ct.POSE_MODEL) == flat
    assert rb.find_onnx(tmp_path / "b", ct.POSE_MODEL) == nested
    assert rb.find_onnx(tmp_path / "b", ct.THREAT_MODEL) is None and rb.find_onnx(None, ct.POSE_MODEL) is None


def test_cli_build_repository_fails_in_one_line_when_fallback_none_and_no_plans(tmp_path, artifacts, capsys):
    from enrichment_export.cli import main

    code = main(
        ["build-repository", "--target", "tensorrt", "--out", str(tmp_path / "cli"), "--artifacts", str(artifacts),
         "--plans", str(tmp_path / "plans"), "--gpu-cc", "8.6", "--trt-version", "10.5.0.18", "--fallback", "none",
         "--allowed-root", str(tmp_path)]
    )  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "fallback 'none'" in err[0]


def test_load_gpu_profile_raises_value_error_when_batch_size_exceeds_max(tmp_path):
    bad = tmp_path / "profile.json"
    bad.write_text(json.dumps({ct.POSE_MODEL: {"preferred_batch_sizes": [64]}}))
    with pytest.raises(ValueError, match="max_batch_size=8"):
        rb.load_gpu_profile(bad)


def test_load_gpu_profile_returns_defaults_when_file_is_missing(tmp_path):
    assert rb.load_gpu_profile(tmp_path / "absent.json") == rb.GPU_DEFAULT_TUNING


# --------------------------------------------------------------------------------------------- paths, inputs


def test_build_repository_raises_invalid_model_path_when_output_is_outside_allowed_roots(tmp_path, artifacts):
    with pytest.raises(InvalidModelPathError, match="outside"):
        rb.build_repository(tmp_path.parent / "elsewhere", artifacts=artifacts, allowed_roots=[tmp_path])


def test_build_repository_raises_invalid_model_path_when_onnx_path_has_traversal(tmp_path, artifacts):
    with pytest.raises(InvalidModelPathError, match=r"\.\."):
        rb.build_repository(
            tmp_path / "repo",
            onnx={ct.POSE_MODEL: f"{artifacts}/../artifacts/{ct.POSE_MODEL}.onnx"},
            artifacts=artifacts,
            allowed_roots=[tmp_path],
        )


def test_build_repository_validates_every_user_path_when_building(tmp_path, artifacts, monkeypatch):
    import enrichment_light.core.paths as paths

    seen: list[str] = []
    real = paths.validate_model_path

    def spy(path, **kw):
        seen.append(str(path))
        return real(path, **kw)

    monkeypatch.setattr(paths, "validate_model_path", spy)
    _build(tmp_path, artifacts, "tensorrt", plans=tmp_path / "plans")
    assert str(tmp_path / "repo-tensorrt") in seen
    assert str(artifacts) in seen
    assert str(tmp_path / "plans") in seen


def test_build_repository_raises_file_not_found_when_onnx_is_missing(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no ONNX file for yolov8n_pose"):
        rb.build_repository(tmp_path / "repo", artifacts=tmp_path / "empty", allowed_roots=[tmp_path])


def test_build_repository_raises_value_error_when_target_is_unknown(tmp_path):
    with pytest.raises(ValueError, match="target must be one of"):
        rb.build_repository(tmp_path / "repo", target="gpu", allowed_roots=[tmp_path])


def test_build_repository_removes_other_target_files_when_rebuilt(tmp_path, artifacts):
    out = tmp_path / "repo"
    rb.build_repository(out, target="cpu", artifacts=artifacts, allowed_roots=[tmp_path])
    assert (out / ct.POSE_MODEL / "1" / "model.py").is_file()
    rb.build_repository(out, target="onnx", artifacts=artifacts, allowed_roots=[tmp_path])
    assert not (out / ct.POSE_MODEL / "1" / "model.py").exists()


# --------------------------------------------------------------------------------------------- one source of truth


def test_committed_configs_equal_generated_configs_when_built_with_defaults():
    assert rb.sync_source_repository(ROOT / "model_repository", check=True) == []


def test_committed_repository_equals_builder_output_for_python_models_and_ensembles(tmp_path, artifacts):
    """The builder writes model.py from the package data, and its cpu configs (COCO defaults) match."""
    for name in ct.ALL_MODELS:
        assert (ROOT / "model_repository" / name / "config.pbtxt").is_file(), name
        if ct.model_spec(name).kind != "ensemble":
            assert rb.python_model_source(name).is_file(), name
    onnx_paths = {n: _fake_onnx(tmp_path / "coco" / f"{n}.onnx", n, list(rb.COCO_NAMES)) for n in ct.INFERENCE_MODELS}
    result = rb.build_repository(tmp_path / "repo", target="cpu", onnx=onnx_paths, allowed_roots=[tmp_path])
    for name in ct.ALL_MODELS:
        committed = ROOT / "model_repository" / name
        assert (result.out_dir / name / "config.pbtxt").read_text() == (committed / "config.pbtxt").read_text(), name
        if (committed / "1" / "model.py").is_file():
            assert (result.out_dir / name / "1" / "model.py").read_bytes() == (
                committed / "1" / "model.py"
            ).read_bytes()


def test_onnxruntime_adapters_are_identical_when_committed():
    sources = {(ROOT / "model_repository" / n / "1" / "model.py").read_bytes() for n in ct.INFERENCE_MODELS}
    assert len(sources) == 1


def test_ensemble_steps_chain_outputs_to_inputs_when_read_from_config():
    for name, steps in rb.ENSEMBLE_STEPS.items():
        produced = {t.name for t in ct.model_spec(name).inputs}
        for model, inputs, outputs in steps:
            spec = ct.model_spec(model)
            assert set(inputs) == {t.name for t in spec.inputs}, (name, model)
            assert set(inputs.values()) <= produced, (name, model)
            assert set(outputs) <= {t.name for t in spec.outputs}
            produced |= set(outputs.values())
        assert {t.name for t in ct.model_spec(name).outputs} <= produced


@pytest.mark.parametrize(
    ("tensor", "ensemble"),
    [(ct.POSE_TENSOR_ENSEMBLE, ct.POSE_ENSEMBLE), (ct.THREAT_TENSOR_ENSEMBLE, ct.THREAT_ENSEMBLE)],
)
def test_tensor_ensemble_runs_the_bytes_ensembles_detector_and_postprocessor_when_generated(tensor, ensemble):
    steps, bytes_steps = rb.ENSEMBLE_STEPS[tensor], rb.ENSEMBLE_STEPS[ensemble]
    assert [m for m, _, _ in bytes_steps] == [ct.PREPROCESS] + [m for m, _, _ in steps]
    assert steps[0][1] == {ct.IMAGES: ct.IMAGES}  # the request's tensor goes straight to the detector
    assert steps[1][1][ct.LETTERBOX_INFO] == ct.LETTERBOX_INFO
    assert steps[1][2] == bytes_steps[2][2]  # the same postprocessor outputs, under the same names
    spec, bytes_spec = ct.model_spec(tensor), ct.model_spec(ensemble)
    assert spec.outputs == bytes_spec.outputs
    assert spec.input(ct.IMAGES) == ct.model_spec(ct.PREPROCESS).output(ct.IMAGES)
    assert spec.input(ct.LETTERBOX_INFO) == ct.model_spec(ct.PREPROCESS).output(ct.LETTERBOX_INFO)
    cfg = rb.parse_config((ROOT / "model_repository" / tensor / "config.pbtxt").read_text())
    assert [s.model_name for s in cfg.ensemble_scheduling.step] == [m for m, _, _ in steps]


def test_class_names_from_metadata_reads_json_and_python_dict_text():
    assert rb.class_names_from_metadata({"names": '{"0": "gun", "1": "knife"}'}) == ("gun", "knife")
    assert rb.class_names_from_metadata({"names": "{0: 'gun', 1: 'knife'}"}) == ("gun", "knife")
    assert rb.class_names_from_metadata({}) is None
    with pytest.raises(ValueError, match=r"ids 0\.\.N-1"):
        rb.class_names_from_metadata({"names": '{"1": "gun"}'})


def test_cli_build_repository_writes_repository_when_run(tmp_path, artifacts, capsys):
    from enrichment_export.cli import main

    code = main(
        ["build-repository", "--target", "onnx", "--out", str(tmp_path / "cli"), "--artifacts", str(artifacts),
         "--allowed-root", str(tmp_path), "--class-names", ",".join(NAMES)]
    )  # fmt: skip
    assert code == 0
    assert rb.read_manifest(tmp_path / "cli")["target"] == "onnx"
    assert "manifest:" in capsys.readouterr().out
    assert np.all([(tmp_path / "cli" / n / "config.pbtxt").is_file() for n in ct.ALL_MODELS])


def test_build_repository_refuses_gpu_target_when_out_is_the_committed_source(tmp_path, artifacts):
    source = tmp_path / "source"
    source.mkdir()
    with pytest.raises(ValueError, match="committed source repository"):
        rb.build_repository(
            source, target="onnx", artifacts=artifacts, source_repository=source, allowed_roots=[tmp_path]
        )


def test_build_repository_serves_rect_letterbox_when_detectors_have_dynamic_hw(tmp_path, artifacts):
    result = rb.build_repository(tmp_path / "repo", target="cpu", artifacts=artifacts, allowed_roots=[tmp_path])
    assert result.manifest["letterbox"] == "rect"
    for name in (ct.PREPROCESS, ct.ENRICH):
        cfg = rb.parse_config((result.out_dir / name / "config.pbtxt").read_text())
        assert cfg.parameters["letterbox"].string_value == "rect"
    detector = rb.parse_config((result.out_dir / ct.POSE_MODEL / "config.pbtxt").read_text())
    assert list(detector.input[0].dims) == [-1, -1, 3]
    assert list(detector.model_warmup[0].inputs[ct.IMAGES].dims) == [640, 640, 3]


def test_build_repository_falls_back_to_square_letterbox_when_a_detector_onnx_is_fixed_size(tmp_path):
    art = tmp_path / "artifacts"
    for name in ct.INFERENCE_MODELS:
        _fake_onnx(art / f"{name}.onnx", name, static_hw=name == ct.THREAT_MODEL)
    result = rb.build_repository(tmp_path / "repo", target="cpu", artifacts=art, allowed_roots=[tmp_path])
    assert result.manifest["letterbox"] == "square"
    cfg = rb.parse_config((result.out_dir / ct.PREPROCESS / "config.pbtxt").read_text())
    assert cfg.parameters["letterbox"].string_value == "square"
    with pytest.raises(ValueError, match="letterbox 'rect' needs an ONNX with dynamic height and width"):
        rb.build_repository(
            tmp_path / "repo2", target="cpu", artifacts=art, allowed_roots=[tmp_path],
            options=rb.BuildOptions(letterbox="rect"),
        )  # fmt: skip


def test_build_options_refuse_letterbox_when_mode_is_unknown():
    with pytest.raises(ValueError, match=r"BuildOptions\.letterbox must be one of"):
        rb.BuildOptions(letterbox="stretch")


def test_build_repository_fuses_pose_and_threat_when_target_is_cpu(tmp_path, artifacts):
    result = _build(tmp_path, artifacts, "cpu")
    for name, (detector, post) in rb.FUSED_CPU.items():
        entry = result.manifest["models"][name]
        assert entry["backend"] == "python" and entry["fused"] == [ct.PREPROCESS, detector, post]
        onnx_copy = result.out_dir / name / "1" / "model.onnx"
        assert rb._sha256(onnx_copy) == rb._sha256(artifacts / f"{detector}.onnx")
        params = rb.parse_config((result.out_dir / name / "config.pbtxt").read_text()).parameters
        assert params["ort_onnx_file"].string_value == "model.onnx" and params["letterbox"].string_value == "rect"
        assert params["post_conf_threshold"].string_value == "0.5"
    unfused = rb.build_repository(tmp_path / "ens", target="cpu", artifacts=artifacts, allowed_roots=[tmp_path],
                                  options=rb.BuildOptions(fuse_cpu_pipelines=False))  # fmt: skip
    assert unfused.manifest["models"][ct.POSE_ENSEMBLE]["backend"] == "ensemble"
    assert not (unfused.out_dir / ct.POSE_ENSEMBLE / "1" / "model.py").exists()


def test_fused_cpu_models_share_one_adapter_when_committed():
    sources = {(ROOT / "model_repository" / n / "1" / "model.py").read_bytes() for n in rb.FUSED_CPU}
    assert len(sources) == 1


def test_build_repository_applies_cpu_tuning_when_options_override_it(tmp_path, artifacts):
    tuning = {ct.POSE_ENSEMBLE: {"instances": 2, "max_queue_delay_us": 0, "preferred_batch_sizes": [2]}}
    result = rb.build_repository(tmp_path / "repo", target="cpu", artifacts=artifacts, allowed_roots=[tmp_path],
                                 options=rb.BuildOptions(cpu_tuning=tuning))  # fmt: skip
    pose = rb.parse_config((result.out_dir / ct.POSE_ENSEMBLE / "config.pbtxt").read_text())
    assert pose.instance_group[0].count == 2
    assert list(pose.dynamic_batching.preferred_batch_size) == [2]
    assert pose.dynamic_batching.max_queue_delay_microseconds == 0
    threat = rb.parse_config((result.out_dir / ct.THREAT_ENSEMBLE / "config.pbtxt").read_text())
    assert threat.instance_group[0].count == rb.CPU_TUNING[ct.THREAT_ENSEMBLE].instances


def test_osnet_runs_two_single_threaded_instances_that_split_lone_batches_when_built_with_defaults(tmp_path, artifacts):
    result = _build(tmp_path, artifacts, "cpu")
    osnet = rb.parse_config((result.out_dir / ct.REID_MODEL / "config.pbtxt").read_text())
    assert osnet.instance_group[0].count == 2
    params = {k: v.string_value for k, v in osnet.parameters.items()}
    assert (params["intra_op_threads"], params["concurrent_runs"], params["split_batches"]) == ("1", "2", "1")
    opts = rb.BuildOptions(osnet_intra_op_threads=2, osnet_concurrent_runs=1, osnet_split_batches=False,
                           cpu_tuning={ct.REID_MODEL: {"instances": 1}})  # fmt: skip
    old = rb.build_repository(tmp_path / "old", target="cpu", artifacts=artifacts, allowed_roots=[tmp_path],
                              options=opts)  # fmt: skip
    osnet = rb.parse_config((old.out_dir / ct.REID_MODEL / "config.pbtxt").read_text())
    params = {k: v.string_value for k, v in osnet.parameters.items()}
    assert osnet.instance_group[0].count == 1
    assert (params["intra_op_threads"], params["concurrent_runs"], params["split_batches"]) == ("2", "1", "0")


@pytest.mark.parametrize("field", ["osnet_concurrent_runs", "osnet_intra_op_threads"])
def test_build_options_refuse_osnet_threads_when_out_of_range(field):
    with pytest.raises(ValueError, match=field):
        rb.BuildOptions(**{field: -1})


def test_fused_cpu_models_run_two_single_threaded_instances_when_built_with_defaults(tmp_path, artifacts):
    result = _build(tmp_path, artifacts, "cpu")
    for name in rb.FUSED_CPU:
        cfg = rb.parse_config((result.out_dir / name / "config.pbtxt").read_text())
        assert cfg.instance_group[0].count == 2
        assert cfg.parameters["ort_intra_op_threads"].string_value == "1"
        assert cfg.parameters["ort_concurrent_runs"].string_value == "1"
    for name in (ct.POSE_MODEL, ct.THREAT_MODEL):  # enrich's detectors: 1 instance, 2 single-threaded runs
        detector = rb.parse_config((result.out_dir / name / "config.pbtxt").read_text())
        assert detector.instance_group[0].count == 1
        assert detector.parameters["intra_op_threads"].string_value == "1"
        assert detector.parameters["concurrent_runs"].string_value == "2"
        assert detector.parameters["split_batches"].string_value == "0"
    opts = rb.BuildOptions(detector_intra_op_threads=2, fused_concurrent_runs=2)
    custom = rb.build_repository(tmp_path / "custom", target="cpu", artifacts=artifacts, allowed_roots=[tmp_path],
                                 options=opts)  # fmt: skip
    pose = rb.parse_config((custom.out_dir / ct.POSE_ENSEMBLE / "config.pbtxt").read_text())
    assert pose.parameters["ort_intra_op_threads"].string_value == "2"
    assert pose.parameters["ort_concurrent_runs"].string_value == "2"


@pytest.mark.parametrize(("flag", "expected"), [([], ("1", "1")), (["--intra-op-threads", "3"], ("3", "3"))])
def test_cli_intra_op_threads_sets_every_cpu_session_when_given(tmp_path, artifacts, flag, expected):
    from enrichment_export.cli import main

    out = tmp_path / "cli"
    code = main(["build-repository", "--target", "cpu", "--out", str(out), "--artifacts", str(artifacts),
                 "--allowed-root", str(tmp_path), "--class-names", ",".join(NAMES), *flag])  # fmt: skip
    assert code == 0
    detector = rb.parse_config((out / ct.POSE_MODEL / "config.pbtxt").read_text()).parameters
    osnet = rb.parse_config((out / ct.REID_MODEL / "config.pbtxt").read_text()).parameters
    fused = rb.parse_config((out / ct.POSE_ENSEMBLE / "config.pbtxt").read_text()).parameters
    assert (detector["intra_op_threads"].string_value, osnet["intra_op_threads"].string_value) == expected
    assert fused["ort_intra_op_threads"].string_value == expected[0]
