"""validate_model_path: traversal, prefix look-alikes, symlink escapes, NUL, roots from env."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from enrichment_light.core.errors import InvalidModelPathError
from enrichment_light.core.paths import MODEL_ROOTS_ENV, allowed_model_roots, validate_model_path


@pytest.fixture
def tree(tmp_path: Path) -> dict[str, Path]:
    """tmp/models (the root) with a model, tmp/models_x (a look-alike) and tmp/outside."""
    models = tmp_path / "models"
    (models / "pose").mkdir(parents=True)
    (models / "pose" / "yolov8n-pose.pt").write_bytes(b"x")
    (tmp_path / "models_x").mkdir()
    (tmp_path / "models_x" / "evil.pt").write_bytes(b"x")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.pt").write_bytes(b"x")
    (models / "escape.pt").symlink_to(tmp_path / "outside" / "secret.pt")
    (models / "escape_dir").symlink_to(tmp_path / "outside", target_is_directory=True)
    (models / "dangling.pt").symlink_to(tmp_path / "outside" / "missing.pt")
    (models / "inner.pt").symlink_to(models / "pose" / "yolov8n-pose.pt")
    (models / "loop_a").symlink_to(models / "loop_b")
    (models / "loop_b").symlink_to(models / "loop_a")
    return {"tmp": tmp_path, "models": models}


REJECTED = [
    ("models/../outside/secret.pt", "'..' component"),
    ("models/pose/../pose/yolov8n-pose.pt", "'..' component"),  # even when it stays inside
    ("models_x/evil.pt", "outside the allowed roots"),  # string-prefix look-alike
    ("models_x", "outside the allowed roots"),
    ("outside/secret.pt", "outside the allowed roots"),
    ("models/escape.pt", "resolves to"),  # symlink out of the root
    ("models/escape_dir/secret.pt", "resolves to"),  # through a symlinked folder
    ("models/escape_dir/new.pt", "resolves to"),  # missing file under an escaping folder
    ("models/dangling.pt", "resolves to"),  # dangling link pointing outside
    ("models/pose/x\x00.pt", "NUL byte"),
    ("", "is empty"),
    ("   ", "is empty"),
]


@pytest.mark.parametrize(("relative", "reason"), REJECTED, ids=[r[0].replace("\x00", "NUL") for r in REJECTED])
def test_validate_model_path_rejects_when_unsafe(tree, relative, reason):
    path = str(tree["tmp"] / relative) if relative.strip() else relative
    with pytest.raises(InvalidModelPathError, match=reason) as info:
        validate_model_path(path, allowed_roots=[tree["models"]])
    assert isinstance(info.value, ValueError)
    assert info.value.path == path
    assert repr(path) in str(info.value)  # the message names the path


def test_validate_model_path_rejects_when_symlink_loop(tree):
    with pytest.raises(InvalidModelPathError):
        validate_model_path(tree["models"] / "loop_a" / "x.pt", allowed_roots=[tree["models"]])


@pytest.mark.parametrize("bad", [None, 3, b"/models/x.pt"])
def test_validate_model_path_rejects_when_type_wrong(bad):
    with pytest.raises(InvalidModelPathError, match="must be"):
        validate_model_path(bad, allowed_roots=["/"])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "relative",
    ["models/pose/yolov8n-pose.pt", "models/pose", "models", "models/inner.pt", "models//pose/./yolov8n-pose.pt"],
)
def test_validate_model_path_accepts_when_inside_root(tree, relative):
    got = validate_model_path(str(tree["tmp"] / relative), allowed_roots=[tree["models"]], must_exist=True)
    assert got.is_absolute() and got.is_relative_to(tree["models"].resolve())


def test_validate_model_path_accepts_missing_file_unless_must_exist(tree):
    target = tree["models"] / "new" / "model.plan"
    assert validate_model_path(target, allowed_roots=[tree["models"]]) == target.resolve()
    with pytest.raises(InvalidModelPathError, match="does not exist"):
        validate_model_path(target, allowed_roots=[tree["models"]], must_exist=True)


def test_validate_model_path_resolves_relative_path_against_cwd(tree, monkeypatch):
    monkeypatch.chdir(tree["models"])
    assert (
        validate_model_path("pose/yolov8n-pose.pt", allowed_roots=[tree["models"]], must_exist=True)
        == (tree["models"] / "pose" / "yolov8n-pose.pt").resolve()
    )
    monkeypatch.chdir(tree["tmp"] / "outside")
    with pytest.raises(InvalidModelPathError, match="outside the allowed roots"):
        validate_model_path("secret.pt", allowed_roots=[tree["models"]])


def test_validate_model_path_uses_env_roots_when_no_argument(tree, monkeypatch):
    monkeypatch.setenv(MODEL_ROOTS_ENV, os.pathsep.join([str(tree["tmp"] / "outside"), "", str(tree["models"])]))
    assert validate_model_path(tree["tmp"] / "outside" / "secret.pt", must_exist=True)
    assert validate_model_path(tree["models"] / "pose", must_exist=True)
    with pytest.raises(InvalidModelPathError, match="outside"):
        validate_model_path(tree["tmp"] / "models_x" / "evil.pt")


def test_validate_model_path_defaults_include_cwd_and_models_when_env_unset(tree, monkeypatch):
    monkeypatch.delenv(MODEL_ROOTS_ENV, raising=False)
    monkeypatch.chdir(tree["models"])
    roots = allowed_model_roots()
    assert roots[0] == tree["models"].resolve()
    assert Path("/models").resolve() in roots and Path("/cache/tensorrt").resolve() in roots
    assert Path("~/.cache/enrichment-light").expanduser().resolve() in roots
    assert validate_model_path("pose/yolov8n-pose.pt", must_exist=True)


def test_validate_model_path_accepts_single_root_and_symlinked_root(tree):
    link_root = tree["tmp"] / "link_root"
    link_root.symlink_to(tree["models"], target_is_directory=True)
    assert validate_model_path(link_root / "pose", allowed_roots=link_root, must_exist=True)


def test_validate_model_path_rejects_everything_when_no_roots(tree):
    with pytest.raises(InvalidModelPathError, match="no allowed model roots"):
        validate_model_path(tree["models"], allowed_roots=[])
