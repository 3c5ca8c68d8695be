"""OSNet in bf16 through OpenVINO: the session adapter, the runner, the accuracy gate and the repository build.

The oracle is onnxruntime FP32 on the same ONNX file (random-init OSNet: no trained OSNet weights
ship in a public wheel). bf16 needs a CPU with native bfloat16; on one without, the same tests
check the refusal instead.
"""

from __future__ import annotations

import json
import sys
import threading
import types

import cv2
import numpy as np
import pytest

from enrichment_export import bf16
from enrichment_export import quantize as q
from enrichment_export.repository import BuildOptions, build_repository, read_manifest
from enrichment_light.core import contract as ct
from enrichment_light.core import openvino_session as ovs
from enrichment_light.core.errors import ModelFileError, RuntimeMissingError
from enrichment_light.serving.onnxruntime_runner import OnnxRuntimeRunner

pytest.importorskip("openvino")
NATIVE_BF16 = ovs.cpu_has_native_bf16()
needs_bf16 = pytest.mark.skipif(not NATIVE_BF16, reason="no native bf16 on this CPU (the refusal is tested instead)")


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """FP32 ONNX of the three models (random init), as ``serve --untrained`` exports them."""
    from enrichment_export.onnx_export import export_onnx, untrained_model

    art = tmp_path_factory.mktemp("bf16-artifacts")
    for name in ct.INFERENCE_MODELS:
        export_onnx(name, untrained_model(name), art / f"{name}.onnx")
    return art


@pytest.fixture(scope="module")
def osnet(artifacts):
    return artifacts / f"{ct.REID_MODEL}.onnx"


@pytest.fixture(scope="module")
def crops():
    return np.random.default_rng(5).integers(0, 255, (12, 256, 128, 3), dtype=np.uint8)


def _fp32(osnet, crops):
    return q.onnx_session(osnet).run(None, {ct.CROPS: crops})[0]


def _min_cosine(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float((np.sum(a * b, 1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)).min())


# --------------------------------------------------------------------------------------------- session


@needs_bf16
def test_openvino_session_bf16_matches_onnxruntime_fp32_within_cosine_gate(osnet, crops):
    session = ovs.OpenVinoSession(osnet, precision="bf16")
    (got,) = session.run([ct.EMBEDDINGS], {ct.CROPS: crops})
    want = _fp32(osnet, crops)
    assert got.shape == want.shape == (12, 512) and got.dtype == np.float32
    assert _min_cosine(got, want) >= 0.999
    assert np.abs(got - want).max() > 0  # bf16 arithmetic really ran (FP32 would be near-identical)
    assert session.get_inputs() == [ovs.TensorInfo(ct.CROPS, ("?", 256, 128, 3))]
    assert session.get_outputs()[0].name == ct.EMBEDDINGS


def test_openvino_session_fp32_equals_onnxruntime(osnet, crops):
    (got,) = ovs.OpenVinoSession(osnet, precision="fp32").run(None, {ct.CROPS: crops})
    np.testing.assert_allclose(got, _fp32(osnet, crops), rtol=0, atol=1e-4)


def test_openvino_session_gives_each_thread_its_own_request_when_called_concurrently(osnet, crops):
    session = ovs.OpenVinoSession(osnet, precision="bf16" if NATIVE_BF16 else "fp32", streams=2)
    want = [session.run(None, {ct.CROPS: crops[k : k + 6]})[0] for k in (0, 6)]
    got: dict[int, np.ndarray] = {}

    def run(k):
        for _ in range(3):
            got[k] = session.run(None, {ct.CROPS: crops[k : k + 6]})[0]

    threads = [threading.Thread(target=run, args=(k,)) for k in (0, 6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[6], want[1])


def test_openvino_session_names_the_extra_when_openvino_is_missing(osnet, monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino -> ImportError
    with pytest.raises(RuntimeMissingError, match=r"OpenVINO is not installed.*enrichment-light\[openvino\]"):
        ovs.OpenVinoSession(osnet)


def test_openvino_session_refuses_bf16_when_cpu_has_no_native_bf16(osnet, monkeypatch):
    class Core:
        def get_property(self, device, name):
            return ["FP32", "INT8"]

    monkeypatch.setattr(ovs, "_openvino", lambda: types.SimpleNamespace(Core=Core))
    with pytest.raises(RuntimeMissingError, match=r"no native bfloat16.*--reid-precision fp32"):
        ovs.OpenVinoSession(osnet, precision="bf16")


def test_openvino_session_gives_one_line_model_file_error_when_file_is_not_onnx(tmp_path):
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ModelFileError, match="OpenVINO cannot load") as info:
        ovs.OpenVinoSession(bad, precision="fp32")
    assert "\n" not in str(info.value)


def test_openvino_session_refuses_unknown_precision(osnet):
    with pytest.raises(ValueError, match="precision must be one of"):
        ovs.OpenVinoSession(osnet, precision="int8")


# --------------------------------------------------------------------------------------------- runner


@needs_bf16
def test_runner_serves_openvino_bf16_with_split_runs_when_config_says_runtime_openvino(osnet, crops):
    params = {"onnx_file": osnet.name, "runtime": "openvino", "precision": "bf16", "intra_op_threads": "1",
              "concurrent_runs": "2"}  # fmt: skip
    runner = OnnxRuntimeRunner.from_parameters(ct.REID_MODEL, osnet.parent, params)
    assert isinstance(runner.session, ovs.OpenVinoSession) and runner.session.precision == "bf16"
    (result,) = runner.run_requests([crops])  # a lone request: two 6-row runs on two streams
    assert _min_cosine(result[ct.EMBEDDINGS], _fp32(osnet, crops)) >= 0.999
    (bad,) = runner.run_requests([crops[:, :128]])
    assert "shape" in str(bad)  # the input checks are the runtime's, not OpenVINO's


def test_runner_refuses_unknown_runtime(osnet):
    with pytest.raises(ValueError, match="runtime must be one of"):
        OnnxRuntimeRunner(ct.REID_MODEL, osnet, runtime="tensorflow")


# --------------------------------------------------------------------------------------------- gate + build


def _write_frames(folder, n):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(11)
    for k in range(n):
        cv2.imwrite(str(folder / f"f{k}.png"), rng.integers(0, 255, (360, 480, 3), dtype=np.uint8))


@needs_bf16
def test_bf16_gate_passes_and_refuses_by_min_cosine(osnet, tmp_path):
    _write_frames(tmp_path / "held", 3)
    report = bf16.bf16_gate(osnet, holdout_dir=tmp_path / "held")
    assert report.passed and report.frames == 3 * q.OSNET_CROPS_PER_FRAME and report.min_cosine >= 0.99
    strict = q.AccuracyThresholds(min_cosine=1.0)
    with pytest.raises(q.AccuracyGateError, match=r"bf16 refused.*min cosine .* < 1\.0.*--force-accuracy"):
        bf16.bf16_gate(osnet, holdout_dir=tmp_path / "held", thresholds=strict)
    forced = bf16.bf16_gate(osnet, holdout_dir=tmp_path / "held", thresholds=strict, force=True)
    assert not forced.passed and forced.failures


@needs_bf16
def test_build_repository_serves_osnet_bf16_through_openvino_with_gate_figures(artifacts, tmp_path):
    _write_frames(tmp_path / "held", 2)
    options = BuildOptions(osnet_precision="bf16", bf16_holdout=tmp_path / "held")
    roots = [tmp_path, artifacts]
    result = build_repository(tmp_path / "repo", artifacts=artifacts, options=options, allowed_roots=roots)
    entry = read_manifest(result.out_dir)["models"][ct.REID_MODEL]
    assert entry["precision"] == "bf16" and entry["serving"] == "openvino" and entry["runtime"] == "openvino"
    assert entry["bf16_accuracy"]["passed"] is True and entry["bf16_accuracy"]["min_cosine"] >= 0.99
    assert entry["bf16_gate_forced"] is False
    config = (result.out_dir / ct.REID_MODEL / "config.pbtxt").read_text()
    assert 'key: "runtime"\n  value {\n    string_value: "openvino"' in config
    assert 'key: "precision"\n  value {\n    string_value: "bf16"' in config
    detectors = read_manifest(result.out_dir)["models"]
    assert detectors[ct.POSE_MODEL]["serving"] == "onnxruntime" and "runtime" not in detectors[ct.POSE_MODEL]


@needs_bf16
def test_build_repository_writes_nothing_when_bf16_gate_fails_unless_forced(artifacts, tmp_path, monkeypatch):
    monkeypatch.setattr(bf16, "AccuracyThresholds", lambda: q.AccuracyThresholds(min_cosine=1.0))
    _write_frames(tmp_path / "held", 1)
    options = BuildOptions(osnet_precision="bf16", bf16_holdout=tmp_path / "held")
    roots = [tmp_path, artifacts]
    with pytest.raises(q.AccuracyGateError, match="bf16 refused"):
        build_repository(tmp_path / "refused", artifacts=artifacts, options=options, allowed_roots=roots)
    assert not (tmp_path / "refused").exists()
    forced = BuildOptions(osnet_precision="bf16", bf16_holdout=tmp_path / "held", bf16_force=True)
    result = build_repository(tmp_path / "forced", artifacts=artifacts, options=forced, allowed_roots=roots)
    entry = json.loads((result.out_dir / "repository.json").read_text())["models"][ct.REID_MODEL]
    assert entry["bf16_gate_forced"] is True and entry["bf16_accuracy"]["passed"] is False


def test_build_repository_refuses_bf16_when_not_native_or_not_cpu_target(artifacts, tmp_path):
    options = BuildOptions(osnet_precision="bf16")
    with pytest.raises(ValueError, match="osnet_precision 'bf16' is the cpu target's"):
        build_repository(tmp_path / "onnx", target="onnx", artifacts=artifacts, options=options,
                         allowed_roots=[tmp_path, artifacts])  # fmt: skip
    if not NATIVE_BF16:
        with pytest.raises(RuntimeMissingError, match="no native bfloat16"):
            roots = [tmp_path, artifacts]
            build_repository(tmp_path / "cpu", artifacts=artifacts, options=options, allowed_roots=roots)
        assert not (tmp_path / "cpu").exists()
    with pytest.raises(ValueError, match="osnet_precision must be 'fp32' or 'bf16'"):
        BuildOptions(osnet_precision="int8")


def test_build_repository_cli_refuses_holdout_without_bf16(artifacts, tmp_path, capsys):
    from enrichment_export.cli import main

    code = main(["build-repository", "--out", str(tmp_path / "r"), "--artifacts", str(artifacts), "--holdout",
                 str(tmp_path)])  # fmt: skip
    assert code != 0
    assert "--holdout and --force-accuracy apply to --reid-precision bf16" in capsys.readouterr().err
