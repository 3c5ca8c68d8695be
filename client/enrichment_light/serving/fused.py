"""The cpu target's fused ``pose`` / ``threat`` models: preprocess + detector + postprocess in one stub.

Same names, inputs and outputs as the ensembles other targets serve; two Python-stub hops and their
copies fewer (docs/cpu-performance.md). The config's model name selects the pipeline; parameters:
``max_pixels``, ``letterbox``, ``ort_*`` (the detector's onnxruntime runner) and ``post_*`` (the
postprocessor's thresholds, rules, class names).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

from enrichment_light.core import contract as ct
from enrichment_light.core.params import parameters, subset
from enrichment_light.serving import pipeline
from enrichment_light.serving.onnxruntime_runner import OnnxRuntimeRunner
from enrichment_light.serving.triton import input_array, to_responses

# ensemble name -> (its detector, its postprocess batch function, its settings class)
PIPELINES: dict[str, tuple[str, Any, Any]] = {
    ct.POSE_ENSEMBLE: (ct.POSE_MODEL, pipeline.pose_postprocess_batch, pipeline.PoseSettings),
    ct.THREAT_ENSEMBLE: (ct.THREAT_MODEL, pipeline.threat_postprocess_batch, pipeline.ThreatSettings),
}
_INPUTS = (ct.IMAGE_BYTES, ct.CONF_THRESHOLD, ct.IOU_THRESHOLD)


def python_model_class(pb: Any) -> type:
    """The ``TritonPythonModel`` of the fused ``pose`` and ``threat`` models (`pb`: the stub's utils module)."""

    class TritonPythonModel:
        def initialize(self, args: Mapping[str, str]) -> None:
            config = json.loads(args["model_config"])
            self.name = config["name"]
            params = parameters(config)
            model_dir = os.path.join(args["model_repository"], args["model_version"])
            try:
                detector, self.postprocess, settings = PIPELINES[self.name]
                self.max_pixels = pipeline.max_pixels_from_parameters(params)
                self.letterbox = pipeline.letterbox_mode_from_parameters(params)
                self.settings = settings.from_parameters(params, "post_")
                self.runner = OnnxRuntimeRunner.from_parameters(detector, model_dir, subset(params, "ort_"))
            except Exception as err:
                raise pb.TritonModelException(f"{self.name}: {err}") from err
            unmapped = getattr(getattr(self.settings, "mapping", None), "unmapped", ())
            if unmapped:
                pb.Logger.log_warn(f"{self.name}: class names not in the threat taxonomy: {list(unmapped)}")

        def execute(self, requests: Sequence[Any]) -> list[Any]:
            items = [pipeline.PreprocessInput(*(input_array(pb, r, n) for n in _INPUTS)) for r in requests]
            results = pipeline.fused_detect_batch(
                items,
                run=self.runner.run_many,
                postprocess=lambda posts: self.postprocess(posts, self.settings),
                max_pixels=self.max_pixels,
                letterbox_mode=self.letterbox,
            )
            return to_responses(pb, results)

    return TritonPythonModel
