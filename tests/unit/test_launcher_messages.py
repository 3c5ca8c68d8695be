"""The embedded server's start-failure message: which models failed to load and why (Triton's log lines)."""

from __future__ import annotations

from enrichment_light.devserver.launcher import model_load_failures

# Shapes copied from a tritonserver 2.51 log (a Python-backend model raising in initialize, and a
# model whose file is missing); the reason runs until the escaped traceback or the closing quote.
STUB_FAILURE = (
    "E1202 09:58:52.627754 24347 model_lifecycle.cc:642] \"failed to load 'osnet_x0_25' version 1: Internal: "
    "TritonModelException: osnet_x0_25: cannot load the ONNX model: OpenVINO is not installed (No module named "
    "'openvino'); install it with: pip install 'enrichment-light[openvino]'\\n\\nAt:\\n  /venv/lib/python3.11/"
    'site-packages/enrichment_light/serving/onnxruntime_runner.py(222): initialize\\n"'
)
PLAIN_FAILURE = (
    "E1202 09:58:52.700000 24347 model_lifecycle.cc:642] \"failed to load 'pose' version 1: Invalid argument: "
    "unable to find '/repo/pose/1/model.py'\""
)


def test_model_load_failures_names_each_model_with_the_first_line_of_its_reason():
    lines = [
        "I1202 09:58:51.0 1 server.cc:1] started",
        STUB_FAILURE,
        PLAIN_FAILURE,
        "E1202 09:58:53.3 1 model_repository_manager.cc:703] \"Invalid argument: ensemble 'reid' depends on "
        "'osnet_x0_25' which has no loaded version.\"",
    ]
    failed = model_load_failures(lines)
    assert failed == {
        "osnet_x0_25": "Internal: TritonModelException: osnet_x0_25: cannot load the ONNX model: OpenVINO is not "
        "installed (No module named 'openvino'); install it with: pip install 'enrichment-light[openvino]'",
        "pose": "Invalid argument: unable to find '/repo/pose/1/model.py'",
    }


def test_model_load_failures_ignores_info_lines_that_quote_the_same_words():
    assert model_load_failures(["I1202 09:58:52.6 1 x.cc:1] \"failed to load 'x' version 1: just quoted\""]) == {}
