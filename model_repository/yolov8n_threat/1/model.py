"""cpu target: an inference model served by onnxruntime inside the Python backend.

The same file serves yolov8n_pose, yolov8n_threat and osnet_x0_25: the model name from the
config selects the contract (tensor names, dtypes, shapes); the ONNX file and the onnxruntime
thread counts come from the config parameters.
"""

import json
import os

import triton_python_backend_utils as pb_utils

from enrichment_light.serving.onnxruntime_runner import OnnxRuntimeRunner
from enrichment_light.serving.params import parameters
from enrichment_light.serving.triton import input_array, to_responses


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        model_dir = os.path.join(args["model_repository"], args["model_version"])
        try:
            self.runner = OnnxRuntimeRunner.from_parameters(config["name"], model_dir, parameters(config))
        except Exception as err:
            raise pb_utils.TritonModelException(f"{config['name']}: cannot load the ONNX model: {err}") from err

    def execute(self, requests):
        inputs = [input_array(pb_utils, r, self.runner.input.name) for r in requests]
        return to_responses(pb_utils, self.runner.run_requests(inputs))
