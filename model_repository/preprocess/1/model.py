"""preprocess: one encoded image (BYTES) per batch row -> letterboxed uint8 ``images`` + ``LETTERBOX_INFO``.

The ``letterbox`` config parameter picks the minimal stride-32 rectangle (``rect``) or 640 x 640
(``square``).

The optional threshold overrides are checked here, before any decode, so that a bad one fails the
request before the detector runs (the postprocessor applies them).
"""

import json

import triton_python_backend_utils as pb_utils

from enrichment_light.core import contract as ct
from enrichment_light.core.params import parameters
from enrichment_light.serving import pipeline
from enrichment_light.serving.triton import input_array, to_responses

_INPUTS = (ct.IMAGE_BYTES, ct.CONF_THRESHOLD, ct.IOU_THRESHOLD)


class TritonPythonModel:
    def initialize(self, args):
        try:
            params = parameters(json.loads(args["model_config"]))
            self.max_pixels = pipeline.max_pixels_from_parameters(params)
            self.letterbox = pipeline.letterbox_mode_from_parameters(params)
        except ValueError as err:
            raise pb_utils.TritonModelException(f"preprocess: {err}") from err

    def execute(self, requests):
        items = [pipeline.PreprocessInput(*(input_array(pb_utils, r, n) for n in _INPUTS)) for r in requests]
        results = pipeline.preprocess_batch(items, max_pixels=self.max_pixels, letterbox_mode=self.letterbox)
        return to_responses(pb_utils, results)
