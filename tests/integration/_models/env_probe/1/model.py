"""Test-only model: returns a JSON report of the stub's interpreter, sys.path, environment and imports."""

import importlib.util
import json
import os
import sys

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        report = {
            "executable": sys.executable,
            "version": list(sys.version_info[:3]),
            "prefix": sys.prefix,
            "path": sys.path,
            "isolated": bool(sys.flags.isolated),
            "env": {k: os.environ.get(k) for k in ("PATH", "LD_LIBRARY_PATH", "PYTHONPATH", "HOME")},
            "enrichment_light": importlib.util.find_spec("enrichment_light") is not None,
            "numpy": np.__version__,
        }
        payload = np.array([json.dumps(report).encode()], dtype=np.object_)
        return [pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("REPORT", payload)]) for _ in requests]
