"""ONNX export: parity with the PyTorch models, the tensor contract, metadata and argument checks."""

from __future__ import annotations

import json
import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from enrichment_export import onnx_export as ox
from enrichment_export.files import sha256_file
from enrichment_export.osnet import create_osnet_x0_25
from enrichment_light.core import contract
from enrichment_light.core.errors import ModelFileError


@pytest.fixture(autouse=True, scope="module")
def _model_roots(tmp_path_factory):
    # validate_model_path only allows the configured roots; tests write under pytest's tmp dir.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ENRICHMENT_MODEL_ROOTS", os.pathsep.join([str(tmp_path_factory.getbasetemp()), os.getcwd()]))
        yield


CUSTOM_NAMES = {0: "gun", 1: "knife", 2: "baseball bat", 3: "person"}


def _session(path) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("onnx")


@pytest.fixture(scope="module")
def pose_checkpoint(export_dir):
    from ultralytics import YOLO

    path = export_dir / "pose-untrained.pt"
    YOLO("yolov8n-pose.yaml").save(str(path))
    return path


@pytest.fixture(scope="module")
def pose_export(export_dir, pose_checkpoint):
    return ox.export_yolo_onnx(pose_checkpoint, export_dir / "pose" / "model.onnx", model_name=contract.POSE_MODEL)


@pytest.fixture(scope="module")
def threat_model():
    return ox.untrained_yolo(contract.THREAT_MODEL, seed=1)


@pytest.fixture(scope="module")
def threat_export(export_dir, threat_model):
    return ox.export_yolo_onnx(threat_model, export_dir / "threat.onnx", model_name=contract.THREAT_MODEL)


@pytest.fixture(scope="module")
def custom_model():
    return ox.untrained_yolo(contract.THREAT_MODEL, seed=2, names=CUSTOM_NAMES)


@pytest.fixture(scope="module")
def custom_export(export_dir, custom_model):
    return ox.export_yolo_onnx(custom_model, export_dir / "custom.onnx", model_name=contract.THREAT_MODEL)


@pytest.fixture(scope="module")
def osnet_model():
    torch.manual_seed(3)
    model = create_osnet_x0_25()
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if name.endswith("running_var"):
                t.uniform_(0.5, 1.5)
            elif name.endswith("running_mean"):
                t.normal_(0, 0.1)
    return model


@pytest.fixture(scope="module")
def osnet_export(export_dir, osnet_model):
    return ox.export_osnet_onnx(osnet_model, export_dir / "osnet.onnx")


def _images(batch: int, size: int = contract.DETECTOR_INPUT_SIZE, seed: int = 0) -> np.ndarray:
    import cv2
    from ultralytics.utils import ASSETS

    rng = np.random.default_rng(seed)
    out = rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
    photo = cv2.imread(str(ASSETS / "bus.jpg"))
    if photo is not None:
        out[0] = cv2.resize(photo, (size, size))[:, :, ::-1]
    return out


def _ultralytics_reference(model: torch.nn.Module, images: np.ndarray) -> np.ndarray:
    import copy

    fused = copy.deepcopy(model).float().eval().fuse(verbose=False)
    with torch.no_grad():
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
        return fused(x)[0].numpy()


@pytest.mark.parametrize("batch", [1, 4])
def test_export_yolo_onnx_matches_ultralytics_when_pose_checkpoint(pose_export, pose_checkpoint, batch):
    from ultralytics.nn.tasks import load_checkpoint

    model, _ = load_checkpoint(str(pose_checkpoint))
    images = _images(batch)
    got = _session(pose_export.path).run(None, {contract.IMAGES: images})[0]
    want = _ultralytics_reference(model, images)
    assert got.shape == (batch, contract.POSE_RAW_CHANNELS, contract.NUM_ANCHORS_640)
    assert np.abs(got - want).max() <= 1e-4


@pytest.mark.parametrize("batch", [1, 4])
def test_export_yolo_onnx_matches_ultralytics_when_coco_detect_model(threat_export, threat_model, batch):
    images = _images(batch, seed=batch)
    got = _session(threat_export.path).run(None, {contract.IMAGES: images})[0]
    assert got.shape == (batch, 4 + 80, contract.NUM_ANCHORS_640)
    assert np.abs(got - _ultralytics_reference(threat_model, images)).max() <= 1e-4


@pytest.mark.parametrize("batch", [1, 4])
def test_export_yolo_onnx_matches_ultralytics_when_custom_four_class_model(custom_export, custom_model, batch):
    images = _images(batch, seed=10 + batch)
    got = _session(custom_export.path).run(None, {contract.IMAGES: images})[0]
    assert got.shape == (batch, 4 + 4, contract.NUM_ANCHORS_640)
    assert np.abs(got - _ultralytics_reference(custom_model, images)).max() <= 1e-4


@pytest.mark.parametrize("batch", [1, 8])
def test_export_osnet_onnx_matches_module_when_normalised_in_graph(osnet_export, osnet_model, batch):
    rng = np.random.default_rng(batch)
    crops = rng.integers(0, 256, (batch, contract.REID_INPUT_HEIGHT, contract.REID_INPUT_WIDTH, 3), dtype=np.uint8)
    got = _session(osnet_export.path).run(None, {contract.CROPS: crops})[0]
    mean = torch.tensor(contract.IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(contract.IMAGENET_STD).view(1, 3, 1, 1)
    x = (torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 255 - mean) / std
    with torch.no_grad():
        want = torch.nn.functional.normalize(osnet_model(x), dim=1).numpy()
    assert got.shape == (batch, contract.EMBEDDING_DIMENSION)
    assert np.abs(got - want).max() <= 1e-5
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_export_osnet_onnx_gives_finite_zeros_when_embedding_is_all_zero(tmp_path):
    model = create_osnet_x0_25()
    with torch.no_grad():
        model.fc[1].bias.fill_(-1e3)  # ReLU after BN -> all-zero feature
    result = ox.export_osnet_onnx(model, tmp_path / "zero.onnx", simplify=False)
    crops = np.zeros((2, contract.REID_INPUT_HEIGHT, contract.REID_INPUT_WIDTH, 3), dtype=np.uint8)
    got = _session(result.path).run(None, {contract.CROPS: crops})[0]
    assert np.isfinite(got).all() and not got.any()


@pytest.mark.parametrize("name", ["pose", "threat", "custom", "osnet"])
def test_exported_onnx_matches_contract_when_loaded(request, name):
    result = request.getfixturevalue(f"{name}_export")
    model = onnx.load(str(result.path))
    onnx.checker.check_model(model)
    ox.check_onnx_contract(model, result.model_name)
    spec = contract.model_spec(result.model_name)
    (inp,) = model.graph.input
    dims = inp.type.tensor_type.shape.dim
    assert inp.name == spec.inputs[0].name
    got = [d.dim_value if d.HasField("dim_value") else -1 for d in dims[1:]]
    assert dims[0].dim_param == ox.BATCH_DIM and got == list(spec.inputs[0].shape)
    (out,) = model.graph.output
    out_dims = out.type.tensor_type.shape.dim
    assert out.name == spec.outputs[0].name and out_dims[0].dim_param == ox.BATCH_DIM
    if result.model_name == contract.REID_MODEL:
        assert all(d.HasField("dim_value") for d in out_dims[1:])  # only the batch dim is dynamic
    else:  # detectors: dynamic H, W in, so the anchor count varies; the channels stay fixed
        assert [d.dim_param or d.dim_value for d in dims[1:]] == ["height", "width", 3]
        assert out_dims[1].HasField("dim_value") and out_dims[2].dim_param == "anchors"
    assert result.sha256 == sha256_file(result.path) and result.size_bytes == result.path.stat().st_size


@pytest.mark.parametrize("hw", [(640, 640), (640, 480), (384, 640), (32, 640)])
def test_exported_detector_matches_ultralytics_when_input_is_a_stride_32_rectangle(pose_export, pose_checkpoint, hw):
    from ultralytics.nn.tasks import load_checkpoint

    model, _ = load_checkpoint(str(pose_checkpoint))
    images = np.random.default_rng(hw[1]).integers(0, 256, (2, *hw, 3), dtype=np.uint8)
    got = _session(pose_export.path).run(None, {contract.IMAGES: images})[0]
    want = _ultralytics_reference(model, images)
    assert got.shape == (2, contract.POSE_RAW_CHANNELS, hw[0] * hw[1] * 21 // 1024)  # anchors at strides 8/16/32
    assert np.abs(got - want).max() <= 1e-4


def test_export_yolo_onnx_writes_metadata_when_pose_checkpoint(pose_export, pose_checkpoint):
    meta = ox.read_onnx_metadata(pose_export.path)
    assert meta == pose_export.metadata
    assert meta["model_name"] == contract.POSE_MODEL and meta["task"] == "pose"
    assert json.loads(meta["kpt_shape"]) == [contract.NUM_KEYPOINTS, contract.KEYPOINT_DIMS]
    assert json.loads(meta["imgsz"]) == [contract.DETECTOR_INPUT_SIZE] * 2
    assert meta["source_sha256"] == sha256_file(pose_checkpoint)
    assert meta["exporter"] == ox.EXPORTER_VERSION
    assert json.loads(meta["names"]) == {"0": "0"} or len(json.loads(meta["names"])) == 1


def test_export_yolo_onnx_writes_class_names_when_custom_model(custom_export):
    meta = ox.read_onnx_metadata(custom_export.path)
    assert json.loads(meta["names"]) == {str(k): v for k, v in CUSTOM_NAMES.items()}
    assert meta["task"] == "detect" and meta["nc"] == "4" and "kpt_shape" not in meta
    assert meta["source_sha256"] == "untrained"


def test_export_osnet_onnx_writes_metadata(osnet_export):
    meta = ox.read_onnx_metadata(osnet_export.path)
    assert meta["model_name"] == contract.REID_MODEL and meta["l2_normalized"] == "true"
    assert json.loads(meta["imgsz"]) == [contract.REID_INPUT_HEIGHT, contract.REID_INPUT_WIDTH]
    assert json.loads(meta["mean"]) == list(contract.IMAGENET_MEAN)


@pytest.mark.parametrize("filename", ["osnet.pth", "osnet.pth.tar", "model.pth.tar-60"])
def test_export_osnet_onnx_records_checkpoint_sha_when_exported_from_file(tmp_path, osnet_model, filename):
    # torchreid's save_checkpoint writes *.pth.tar and, per epoch, model.pth.tar-<epoch>
    ckpt = tmp_path / filename
    torch.save({"state_dict": osnet_model.state_dict(), "epoch": 60, "rank1": 0.5}, ckpt)
    result = ox.export_osnet_onnx(ckpt, tmp_path / "o.onnx", simplify=False)
    assert result.metadata["source_sha256"] == sha256_file(ckpt)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"model_name": "nope"}, ValueError, "model_name must be one of"),
        ({"model_name": contract.REID_MODEL}, ValueError, "model_name must be one of"),
        ({"opset": 9}, ValueError, "opset must be"),
        ({"output": "model.pt"}, ValueError, r"must be a \.onnx file"),
        ({"source": "missing.pt"}, ModelFileError, "does not exist"),
        ({"source": "weights.txt"}, ModelFileError, r"must be a \.pt, \.pth or torchreid \.pth\.tar"),
        ({"source": "truncated.pt"}, ModelFileError, "not a loadable Ultralytics checkpoint"),
    ],
)
def test_export_yolo_onnx_raises_before_writing_when_arguments_are_bad(tmp_path, kwargs, error, match):
    (tmp_path / "weights.txt").write_text("x")
    (tmp_path / "truncated.pt").write_bytes(b"PK\x03\x04 not really a zip")
    args = {"source": "missing.pt", "output": "out.onnx", "model_name": contract.POSE_MODEL, **kwargs}
    source = tmp_path / args.pop("source")
    output = tmp_path / args.pop("output")
    with pytest.raises(error, match=match):
        ox.export_yolo_onnx(source, output, **args)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["truncated.pt", "weights.txt"]


def test_export_yolo_onnx_raises_when_output_is_a_directory(tmp_path, threat_model):
    (tmp_path / "dir.onnx").mkdir()
    with pytest.raises(ValueError, match="is a directory"):
        ox.export_yolo_onnx(threat_model, tmp_path / "dir.onnx", model_name=contract.THREAT_MODEL)


@pytest.mark.parametrize(
    ("model_name", "source_name", "match"),
    [
        (contract.POSE_MODEL, contract.THREAT_MODEL, "needs an Ultralytics 'pose' model"),
        (contract.THREAT_MODEL, contract.POSE_MODEL, "needs an Ultralytics 'detect' model"),
    ],
)
def test_export_yolo_onnx_raises_model_file_error_when_task_is_wrong(tmp_path, model_name, source_name, match):
    model = ox.untrained_yolo(source_name)
    with pytest.raises(ModelFileError, match=match):
        ox.export_yolo_onnx(model, tmp_path / "m.onnx", model_name=model_name)
    assert not list(tmp_path.iterdir())


def test_export_onnx_dispatches_by_model_name_when_name_is_known(tmp_path):
    with pytest.raises(ValueError, match="model_name must be one of"):
        ox.export_onnx("preprocess", object(), tmp_path / "x.onnx")
    result = ox.export_onnx(contract.REID_MODEL, ox.untrained_model(contract.REID_MODEL), tmp_path / "r.onnx")
    assert result.model_name == contract.REID_MODEL and result.path.is_file()


def test_export_yolo_onnx_leaves_caller_model_unchanged(threat_model, threat_export):
    head = threat_model.model[-1]
    assert not getattr(head, "export", False)
