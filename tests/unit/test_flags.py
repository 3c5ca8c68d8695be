"""The one boolean vocabulary (core.flags) and its three users: config parameters, facades, TensorRT env."""

from __future__ import annotations

import pytest

from enrichment_export import tensorrt_plan as tp
from enrichment_light.core import contract, params
from enrichment_light.core.flags import InvalidFlagError, env_flag, parse_flag


@pytest.mark.parametrize(
    ("value", "default", "expected"),
    [(None, True, True), (None, False, False), ("", True, True), ("", False, False), ("  ", True, True),
     ("1", False, True), ("TRUE", False, True), (" yes ", False, True), ("On", False, True),
     ("0", True, False), ("false", True, False), ("NO", True, False), ("off ", True, False)],
)  # fmt: skip
def test_parse_flag_reads_word_or_default_when_value_is_a_word_or_empty(value, default, expected):
    assert parse_flag(value, default=default, source="x") is expected


@pytest.mark.parametrize("value", ["maybe", "2", "tru", "enabled", "-1"])
def test_parse_flag_raises_naming_source_and_value_when_word_is_unknown(value):
    with pytest.raises(InvalidFlagError, match=rf"config parameter 'k' is not a boolean .*{value!r}"):
        parse_flag(value, default=True, source="config parameter 'k'")
    assert issubclass(InvalidFlagError, ValueError)


@pytest.mark.parametrize(
    ("environ", "default", "expected"),
    [({}, True, True), ({"A": ""}, True, True), ({"A": "", "B": "0"}, True, False), ({"B": "yes"}, False, True),
     ({"A": "1", "B": "on"}, False, True), ({"A": " "}, False, False)],
)  # fmt: skip
def test_env_flag_treats_empty_as_unset_when_spellings_are_read(environ, default, expected):
    assert env_flag(("A", "B"), default=default, environ=environ) is expected


def test_env_flag_raises_when_spellings_disagree():
    with pytest.raises(InvalidFlagError, match="conflicting environment variables: A='1', B='off'"):
        env_flag(("A", "B"), default=False, environ={"A": "1", "B": "off"})


@pytest.mark.parametrize(("raw", "expected"), [("", True), ("off", False), ("on", True)])
def test_three_users_agree_when_value_is_empty_or_a_word(raw, expected, monkeypatch):
    # config parameters
    assert params.get_bool({"k": raw}, "k", True) is expected
    # TensorRT env parsing: *_TENSORRT_FP16 defaults to true, so an empty value keeps fp16
    settings = tp.tensorrt_settings_from_env(contract.POSE_MODEL, {"POSE_TENSORRT_FP16": raw})
    assert settings.fp16 is expected
    # the facades read *_USE_TENSORRT through the same function (default false)
    monkeypatch.setenv("POSE_USE_TENSORRT", raw)
    assert env_flag(("POSE_USE_TENSORRT",), default=False) is (expected if raw else False)
