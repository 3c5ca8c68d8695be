"""reid_crops: one image + K person boxes (original pixels) -> K uint8 256x128 crops for OSNet."""

import json

import triton_python_backend_utils as pb_utils

from enrichment_light.core import contract as ct
from enrichment_light.core.params import get_int, parameters
from enrichment_light.serving import pipeline
from enrichment_light.serving.triton import guard, input_array, to_responses


class TritonPythonModel:
    def initialize(self, args):
        params = parameters(json.loads(args["model_config"]))
        try:
            self.max_pixels = pipeline.max_pixels_from_parameters(params)
            self.max_persons = get_int(params, "max_persons", ct.MAX_PERSONS_PER_FRAME, low=1)
        except ValueError as err:
            raise pb_utils.TritonModelException(f"reid_crops: {err}") from err

    def execute(self, requests):
        results = [
            guard(
                pipeline.reid_crops,
                input_array(pb_utils, r, ct.IMAGE_BYTES),
                input_array(pb_utils, r, ct.PERSON_BOXES),
                max_pixels=self.max_pixels,
                max_persons=self.max_persons,
            )
            for r in requests
        ]
        return to_responses(pb_utils, results)
