"""preprocess: one encoded image (BYTES) per batch row -> letterboxed uint8 ``images`` + ``LETTERBOX_INFO``."""

import json

import triton_python_backend_utils as pb_utils

from enrichment_light.core import contract as ct
from enrichment_light.core.params import parameters
from enrichment_light.serving import pipeline
from enrichment_light.serving.triton import input_array, to_responses


class TritonPythonModel:
    def initialize(self, args):
        try:
            self.max_pixels = pipeline.max_pixels_from_parameters(parameters(json.loads(args["model_config"])))
        except ValueError as err:
            raise pb_utils.TritonModelException(f"preprocess: {err}") from err

    def execute(self, requests):
        data = [input_array(pb_utils, r, ct.IMAGE_BYTES) for r in requests]
        return to_responses(pb_utils, pipeline.preprocess_batch(data, max_pixels=self.max_pixels))
