"""pose_postprocess: raw YOLOv8-pose output -> persons (boxes, keypoints, pose class, suspicious flag)."""

import json

import triton_python_backend_utils as pb_utils

from enrichment_light.core import contract as ct
from enrichment_light.core.params import parameters
from enrichment_light.serving import pipeline
from enrichment_light.serving.triton import input_array, to_responses

_INPUTS = (ct.RAW_OUTPUT, ct.LETTERBOX_INFO, ct.CONF_THRESHOLD, ct.IOU_THRESHOLD)


class TritonPythonModel:
    def initialize(self, args):
        try:
            self.settings = pipeline.PoseSettings.from_parameters(parameters(json.loads(args["model_config"])))
        except ValueError as err:
            raise pb_utils.TritonModelException(f"pose_postprocess: {err}") from err

    def execute(self, requests):
        items = [pipeline.PostprocessInput(*(input_array(pb_utils, r, n) for n in _INPUTS)) for r in requests]
        return to_responses(pb_utils, pipeline.pose_postprocess_batch(items, self.settings))
