"""pose on the cpu target: preprocess + yolov8n_pose (onnxruntime) + pose_postprocess in one Python model.

The ensemble's three steps without its two extra stub hops (see docs/cpu-performance.md); same
name, inputs and outputs as the ensemble that other targets serve.
"""

import json
import os

import triton_python_backend_utils as pb_utils

from enrichment_light.core import contract as ct
from enrichment_light.core.params import parameters, subset
from enrichment_light.serving import pipeline
from enrichment_light.serving.onnxruntime_runner import OnnxRuntimeRunner
from enrichment_light.serving.triton import input_array, to_responses

_INPUTS = (ct.IMAGE_BYTES, ct.CONF_THRESHOLD, ct.IOU_THRESHOLD)


class TritonPythonModel:
    def initialize(self, args):
        params = parameters(json.loads(args["model_config"]))
        model_dir = os.path.join(args["model_repository"], args["model_version"])
        try:
            self.max_pixels = pipeline.max_pixels_from_parameters(params)
            self.letterbox = pipeline.letterbox_mode_from_parameters(params)
            self.settings = pipeline.PoseSettings.from_parameters(params, "post_")
            self.runner = OnnxRuntimeRunner.from_parameters(ct.POSE_MODEL, model_dir, subset(params, "ort_"))
        except Exception as err:
            raise pb_utils.TritonModelException(f"pose: {err}") from err

    def execute(self, requests):
        items = [pipeline.PreprocessInput(*(input_array(pb_utils, r, n) for n in _INPUTS)) for r in requests]
        results = pipeline.fused_detect_batch(
            items,
            run=self.runner.run_many,
            postprocess=lambda posts: pipeline.pose_postprocess_batch(posts, self.settings),
            max_pixels=self.max_pixels,
            letterbox_mode=self.letterbox,
        )
        return to_responses(pb_utils, results)
