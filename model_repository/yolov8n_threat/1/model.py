"""cpu target: this inference model on onnxruntime inside the Python backend (one shared adapter)."""

import triton_python_backend_utils as pb_utils

from enrichment_light.serving.onnxruntime_runner import python_model_class

TritonPythonModel = python_model_class(pb_utils)
