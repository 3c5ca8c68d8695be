"""threat_postprocess: raw YOLOv8 detect output -> threats (boxes, threat type, severity, max severity)."""

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
            self.settings = pipeline.ThreatSettings.from_parameters(parameters(json.loads(args["model_config"])))
        except ValueError as err:
            raise pb_utils.TritonModelException(f"threat_postprocess: {err}") from err
        if self.settings.mapping.unmapped:
            pb_utils.Logger.log_warn(
                f"threat_postprocess: class names not in the threat taxonomy: {list(self.settings.mapping.unmapped)}"
            )

    def execute(self, requests):
        items = [pipeline.PostprocessInput(*(input_array(pb_utils, r, n) for n in _INPUTS)) for r in requests]
        return to_responses(pb_utils, pipeline.threat_postprocess_batch(items, self.settings))
