"""Atomic output shared by annotated images, galleries, configs, ONNX files and plans."""

from __future__ import annotations

import os
import stat

import pytest

from enrichment_light.core.files import atomic_output


def test_atomic_output_replaces_target_with_umask_permissions_when_block_succeeds(tmp_path):
    target = tmp_path / "sub" / "plan.bin"
    old = os.umask(0o022)
    try:
        with atomic_output(target, suffix=".plan") as tmp:
            assert tmp.parent == target.parent and not target.exists()
            tmp.write_bytes(b"new")
    finally:
        os.umask(old)
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert list(target.parent.iterdir()) == [target]


def test_atomic_output_keeps_old_target_and_leaves_no_temp_when_block_raises(tmp_path):
    target = tmp_path / "gallery.npz"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="boom"), atomic_output(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("boom")
    assert target.read_bytes() == b"old"
    assert list(tmp_path.iterdir()) == [target]
