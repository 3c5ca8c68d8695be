"""OSNet-x0.25: parity with torchreid's own implementation and strict checkpoint loading."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest
import torch

from enrichment_export.osnet import (
    OSNet,
    create_osnet_x0_25,
    load_osnet_state_dict,
    load_osnet_x0_25,
    normalize_state_dict,
)
from enrichment_light.core.contract import EMBEDDING_DIMENSION, REID_INPUT_HEIGHT, REID_INPUT_WIDTH
from enrichment_light.core.errors import ModelFileError


@pytest.fixture(autouse=True, scope="module")
def _model_roots(tmp_path_factory):
    # validate_model_path only allows the configured roots; tests write under pytest's tmp dir.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ENRICHMENT_MODEL_ROOTS", os.pathsep.join([str(tmp_path_factory.getbasetemp()), os.getcwd()]))
        yield


def _torchreid_osnet_module():
    # `import torchreid` needs scipy; its osnet.py needs torch alone, so load that file directly.
    spec = importlib.util.find_spec("torchreid")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("torchreid is not installed")
    root = Path(next(iter(spec.submodule_search_locations)))
    candidates = [root / "reid" / "models" / "osnet.py", root / "models" / "osnet.py"]
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        pytest.skip("torchreid's osnet.py not found")
    mod_spec = importlib.util.spec_from_file_location("_torchreid_osnet_oracle", path)
    module = importlib.util.module_from_spec(mod_spec)
    sys.modules.setdefault("_torchreid_osnet_oracle", module)
    mod_spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def torchreid_osnet():
    return _torchreid_osnet_module()


def _randomise(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Give every parameter and BN buffer non-trivial values so parity means something."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not t.is_floating_point():
                continue
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=gen) + 0.5)
            elif name.endswith(("running_mean", "bias")):
                t.copy_(torch.randn(t.shape, generator=gen) * 0.1)
            elif name.endswith("weight") and t.dim() == 1:
                t.copy_(torch.rand(t.shape, generator=gen) + 0.5)
            else:
                t.copy_(torch.randn(t.shape, generator=gen) * (2.0 / max(1, t[0].numel())) ** 0.5)
    return model.eval()


@pytest.fixture(scope="module")
def reference(torchreid_osnet):
    return _randomise(torchreid_osnet.osnet_x0_25(num_classes=751, pretrained=False), seed=0)


@pytest.fixture(scope="module")
def crops() -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    return torch.randn((3, 3, REID_INPUT_HEIGHT, REID_INPUT_WIDTH), generator=gen)


def test_osnet_state_dict_keys_match_torchreid_when_classifier_is_dropped(reference):
    ours = create_osnet_x0_25().state_dict()
    theirs = {k: v for k, v in reference.state_dict().items() if not k.startswith("classifier.")}
    assert list(ours) == list(theirs)
    assert {k: tuple(v.shape) for k, v in ours.items()} == {k: tuple(v.shape) for k, v in theirs.items()}


def test_osnet_forward_matches_torchreid_when_loaded_with_the_same_state_dict(reference, crops):
    ours = create_osnet_x0_25()
    load_osnet_state_dict(ours, normalize_state_dict(reference.state_dict()))
    with torch.no_grad():
        want = reference(crops)
        got = ours(crops)
    assert got.shape == (3, EMBEDDING_DIMENSION)
    assert (got - want).abs().max().item() <= 1e-5


def _prefixed(sd: dict, prefix: str) -> dict:
    return {prefix + k: v for k, v in sd.items()}


@pytest.mark.parametrize(
    "wrap",
    [
        pytest.param(lambda sd: sd, id="raw-state-dict"),
        pytest.param(lambda sd: {"state_dict": _prefixed(sd, "module."), "epoch": 60}, id="state_dict-module-prefix"),
        pytest.param(lambda sd: {"model": sd, "optimizer": {}}, id="model-key"),
        pytest.param(lambda sd: _prefixed(sd, "module."), id="module-prefix-only"),
    ],
)
def test_load_osnet_x0_25_loads_strictly_when_checkpoint_is_torchreid_saved(reference, crops, tmp_path, wrap):
    path = tmp_path / "osnet_x0_25_msmt17.pth"
    torch.save(wrap(reference.state_dict()), path)  # includes classifier.* keys
    model = load_osnet_x0_25(path)
    with torch.no_grad():
        assert (model(crops) - reference(crops)).abs().max().item() <= 1e-5


def _bad_checkpoints(tmp: Path, reference, torchreid_osnet) -> dict[str, tuple[Path, str]]:
    sd = reference.state_dict()
    good = tmp / "good.pth"
    torch.save(sd, good)
    data = good.read_bytes()
    cases: dict[str, tuple[object, str]] = {
        "truncated": (data[: len(data) // 2], "truncated or corrupt"),
        "empty": (b"", "empty"),
        "text-file": (b"this is not a checkpoint\n", "not a PyTorch checkpoint|truncated or corrupt"),
        "random-bytes": (bytes(range(256)) * 64, "not a PyTorch checkpoint|truncated or corrupt"),
        "missing-keys": ({k: v for k, v in sd.items() if not k.startswith("fc.")}, r"missing key\(s\): fc\.0\.bias"),
        "unexpected-keys": ({**sd, "extra.weight": torch.zeros(3)}, r"1 unexpected key\(s\): extra\.weight"),
        "osnet_x1_0": (torchreid_osnet.osnet_x1_0(num_classes=10, pretrained=False).state_dict(), "shape mismatch"),
        "non-tensor-values": ({"conv1.conv.weight": [1, 2, 3]}, "not a tensor"),
        "not-a-mapping": ([torch.zeros(1)], "not an OSNet checkpoint"),
        "pickled-module": (torch.nn.Linear(2, 2), "pickled Python objects"),
    }
    out = {}
    for name, (payload, match) in cases.items():
        p = tmp / f"{name}.pth"
        if isinstance(payload, bytes):
            p.write_bytes(payload)
        else:
            torch.save(payload, p)
        out[name] = (p, match)
    return out


BAD_CASES = [
    "truncated",
    "empty",
    "text-file",
    "random-bytes",
    "missing-keys",
    "unexpected-keys",
    "osnet_x1_0",
    "non-tensor-values",
    "not-a-mapping",
    "pickled-module",
]


@pytest.fixture(scope="module")
def bad_checkpoints(tmp_path_factory, reference, torchreid_osnet):
    return _bad_checkpoints(tmp_path_factory.mktemp("bad-ckpt"), reference, torchreid_osnet)


@pytest.mark.parametrize("case", BAD_CASES)
def test_load_osnet_x0_25_raises_model_file_error_when_checkpoint_is_bad(bad_checkpoints, case):
    path, match = bad_checkpoints[case]
    with pytest.raises(ModelFileError, match=match):
        load_osnet_x0_25(path)


def test_load_osnet_x0_25_lists_every_shape_mismatch_when_architecture_differs(bad_checkpoints):
    path, _ = bad_checkpoints["osnet_x1_0"]
    with pytest.raises(ModelFileError) as info:
        load_osnet_x0_25(path)
    message = str(info.value)
    assert "conv1.conv.weight: checkpoint (64, 3, 7, 7) vs model (16, 3, 7, 7)" in message
    assert str(path) in message


def test_load_osnet_x0_25_raises_when_file_is_missing(tmp_path):
    with pytest.raises(ModelFileError, match="does not exist"):
        load_osnet_x0_25(tmp_path / "nope.pth")


def test_create_osnet_x0_25_returns_eval_model_with_512_dim_output():
    model = create_osnet_x0_25()
    assert isinstance(model, OSNet) and not model.training
    with torch.no_grad():
        assert model(torch.zeros(2, 3, REID_INPUT_HEIGHT, REID_INPUT_WIDTH)).shape == (2, EMBEDDING_DIMENSION)
