"""cpu target: pose / threat as one fused Python model (preprocess + onnxruntime + postprocess)."""

import triton_python_backend_utils as pb_utils

from enrichment_light.serving.fused import python_model_class

TritonPythonModel = python_model_class(pb_utils)
