"""OSNet-x0.25 (Zhou et al., ICCV 2019) without torchreid, and strict checkpoint loading.

The module tree mirrors torchreid's ``osnet_x0_25`` so that its ``state_dict`` keys are torchreid's:
checkpoints from torchreid and BoxMOT load with ``strict=True``. The identity classifier is left out
(it is only used in training), so ``classifier.*`` keys in a checkpoint are dropped.

Architecture: channels [16, 64, 96, 128], layers [2, 2, 2], no instance norm, fc Linear -> BN1d -> ReLU
to 512 dimensions. In eval mode ``forward`` returns the 512-d feature before any normalisation.
"""

from __future__ import annotations

import logging
import os
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from enrichment_light.core.contract import EMBEDDING_DIMENSION
from enrichment_light.core.errors import ModelFileError

LOGGER = logging.getLogger(__name__)

OSNET_X0_25_CHANNELS = (16, 64, 96, 128)
OSNET_X0_25_LAYERS = (2, 2, 2)
_MAX_KEYS_IN_MESSAGE = 12


class _ConvBnRelu(nn.Module):
    """Conv2d (no bias) -> BatchNorm2d -> ReLU; attribute names match torchreid (conv, bn, relu)."""

    def __init__(self, cin: int, cout: int, kernel: int, *, stride: int = 1, padding: int = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)))


class _Conv1x1Linear(nn.Module):
    """1x1 conv -> BN, no activation."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 1, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class _LightConv3x3(nn.Module):
    """1x1 linear conv -> depthwise 3x3 conv -> BN -> ReLU."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 1, bias=False)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False, groups=cout)
        self.bn = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv2(self.conv1(x))))


class _ChannelGate(nn.Module):
    """Sigmoid channel gate shared by the four streams of an OS block."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.global_avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, channels // reduction, 1, bias=True)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(channels // reduction, channels, 1, bias=True)
        self.gate_activation = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.gate_activation(self.fc2(self.relu(self.fc1(self.global_avgpool(x)))))
        return x * w


class _OSBlock(nn.Module):
    """Omni-scale residual block: four streams of 1-4 lightweight 3x3 convs, gated and summed."""

    def __init__(self, cin: int, cout: int, bottleneck_reduction: int = 4) -> None:
        super().__init__()
        mid = cout // bottleneck_reduction
        self.conv1 = _ConvBnRelu(cin, mid, 1)
        self.conv2a = _LightConv3x3(mid, mid)
        self.conv2b = nn.Sequential(*(_LightConv3x3(mid, mid) for _ in range(2)))
        self.conv2c = nn.Sequential(*(_LightConv3x3(mid, mid) for _ in range(3)))
        self.conv2d = nn.Sequential(*(_LightConv3x3(mid, mid) for _ in range(4)))
        self.gate = _ChannelGate(mid)
        self.conv3 = _Conv1x1Linear(mid, cout)
        self.downsample = _Conv1x1Linear(cin, cout) if cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.conv1(x)
        x2 = self.gate(self.conv2a(x1)) + self.gate(self.conv2b(x1)) + self.gate(self.conv2c(x1))
        x2 = x2 + self.gate(self.conv2d(x1))
        identity = x if self.downsample is None else self.downsample(x)
        return torch.relu(self.conv3(x2) + identity)


def _stage(cin: int, cout: int, blocks: int, reduce_spatial_size: bool) -> nn.Sequential:
    layers: list[nn.Module] = [_OSBlock(cin, cout)]
    layers += [_OSBlock(cout, cout) for _ in range(1, blocks)]
    if reduce_spatial_size:
        layers.append(nn.Sequential(_ConvBnRelu(cout, cout, 1), nn.AvgPool2d(2, stride=2)))
    return nn.Sequential(*layers)


class OSNet(nn.Module):
    """OSNet backbone + fc embedding head (torchreid key names, no classifier).

    Args:
        channels: Stem and stage widths, four values.
        layers: OS blocks per stage, three values.
        feature_dim: Size of the fc embedding.

    Input is float NCHW RGB, ImageNet-normalised; output is ``[N, feature_dim]`` (not L2-normalised).
    """

    def __init__(
        self,
        channels: tuple[int, ...] = OSNET_X0_25_CHANNELS,
        layers: tuple[int, ...] = OSNET_X0_25_LAYERS,
        feature_dim: int = EMBEDDING_DIMENSION,
    ) -> None:
        super().__init__()
        if len(channels) != 4 or len(layers) != 3:
            raise ValueError(f"OSNet needs 4 channel widths and 3 layer counts, got {channels} and {layers}")
        c0, c1, c2, c3 = channels
        self.feature_dim = feature_dim
        self.conv1 = _ConvBnRelu(3, c0, 7, stride=2, padding=3)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.conv2 = _stage(c0, c1, layers[0], reduce_spatial_size=True)
        self.conv3 = _stage(c1, c2, layers[1], reduce_spatial_size=True)
        self.conv4 = _stage(c2, c3, layers[2], reduce_spatial_size=False)
        self.conv5 = _ConvBnRelu(c3, c3, 1)
        self.global_avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(nn.Linear(c3, feature_dim), nn.BatchNorm1d(feature_dim), nn.ReLU(inplace=True))
        self._init_params()

    def _init_params(self) -> None:
        # Same scheme as torchreid, so random-init models behave alike.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the ``[N, feature_dim]`` embedding of normalised float NCHW input."""
        x = self.conv5(self.conv4(self.conv3(self.conv2(self.maxpool(self.conv1(x))))))
        v = self.global_avgpool(x).flatten(1)
        return self.fc(v)


def create_osnet_x0_25() -> OSNet:
    """Return a random-init OSNet-x0.25 in eval mode (512-d output, torchreid key names)."""
    return OSNet().eval()


def normalize_state_dict(state: Any, *, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Unwrap a torchreid/BoxMOT checkpoint into a plain OSNet state_dict.

    Accepts a raw state_dict or one nested under ``state_dict`` or ``model``; strips ``module.``
    prefixes (DataParallel) and drops ``classifier.*`` keys.

    Args:
        state: The object ``torch.load`` returned.
        source: Name used in error messages.

    Returns:
        The state_dict with normalised keys.

    Raises:
        ModelFileError: `state` is not a mapping of tensors.
    """
    if isinstance(state, Mapping):
        for key in ("state_dict", "model"):
            inner = state.get(key)
            if isinstance(inner, Mapping):
                state = inner
                break
    if not isinstance(state, Mapping) or not state:
        raise ModelFileError(
            f"{source}: not an OSNet checkpoint: expected a state_dict (a mapping of parameter names to tensors), "
            f"optionally under a 'state_dict' or 'model' key; got {type(state).__name__}"
        )
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise ModelFileError(
                f"{source}: not an OSNet checkpoint: entry {key!r} is a {type(value).__name__}, not a tensor"
            )
        name = key
        while name.startswith("module."):
            name = name[len("module.") :]
        if name.startswith("classifier."):
            continue
        out[name] = value
    return out


def _fmt_keys(keys: list[str]) -> str:
    shown = ", ".join(keys[:_MAX_KEYS_IN_MESSAGE])
    more = len(keys) - _MAX_KEYS_IN_MESSAGE
    return f"{shown}, ... ({more} more)" if more > 0 else shown


def load_osnet_state_dict(model: OSNet, state: Mapping[str, torch.Tensor], *, source: str = "checkpoint") -> None:
    """Load a normalised state_dict into `model` strictly, with an error that lists every mismatch.

    Raises:
        ModelFileError: Missing keys, unexpected keys or shape mismatches (all of them listed).
    """
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = sorted(
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in set(expected) & set(state)
        if tuple(state[k].shape) != tuple(expected[k].shape)
    )
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s): {_fmt_keys(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s): {_fmt_keys(unexpected)}")
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatch(es): {_fmt_keys(mismatched)}")
    if problems:
        raise ModelFileError(
            f"{source} is not an OSNet-x0.25 checkpoint (strict load failed; a different architecture such as "
            f"osnet_x1_0, or a non-OSNet model?): " + "; ".join(problems)
        )
    model.load_state_dict(dict(state), strict=True)


def read_checkpoint(path: str | os.PathLike[str]) -> Any:
    """``torch.load(path, weights_only=True)`` with clear errors for unusable files.

    Raises:
        ModelFileError: Missing, empty, truncated or corrupt file, or one that needs arbitrary
            unpickling (a pickled module rather than a state_dict).
    """
    p = Path(path)
    if not p.is_file():
        raise ModelFileError(f"checkpoint {str(p)!r} does not exist or is not a file")
    if p.stat().st_size == 0:
        raise ModelFileError(f"checkpoint {str(p)!r} is empty (0 bytes); download it again")
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        msg = str(err)
        if "Unsupported global" in msg:
            raise ModelFileError(
                f"checkpoint {str(p)!r} holds pickled Python objects, not just tensors; it cannot be loaded safely "
                f"(weights_only=True). Save its state_dict instead: torch.save(model.state_dict(), path)"
            ) from err
        raise ModelFileError(f"checkpoint {str(p)!r} is not a PyTorch checkpoint ({msg.splitlines()[0]})") from err
    except Exception as err:  # the unpickler raises anything (IndexError, KeyError...) on garbage
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ModelFileError(
            f"checkpoint {str(p)!r} is truncated or corrupt, or not a PyTorch checkpoint ({first}); download it again"
        ) from err


def load_osnet_x0_25(path: str | os.PathLike[str]) -> OSNet:
    """Build OSNet-x0.25 and load a torchreid/BoxMOT checkpoint into it strictly.

    Args:
        path: A ``.pth``/``.pt``/``.pth.tar`` (torchreid, also ``model.pth.tar-60``) file: a raw
            state_dict, or one under ``state_dict``/``model``.

    Returns:
        The model in eval mode.

    Raises:
        ModelFileError: The file is unreadable or does not match OSNet-x0.25 (message lists the keys).
    """
    source = f"checkpoint {str(path)!r}"
    state = normalize_state_dict(read_checkpoint(path), source=source)
    model = create_osnet_x0_25()
    load_osnet_state_dict(model, state, source=source)
    LOGGER.info("loaded OSNet-x0.25 weights from %s (%d tensors)", path, len(state))
    return model.eval()
