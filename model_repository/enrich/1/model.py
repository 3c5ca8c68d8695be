"""enrich (BLS): decode a frame once -> threats, every person with pose class, and one embedding per person.

An ensemble cannot express this: persons found by pose are cropped from the original-resolution
frame, OSNet is skipped when nobody is there, and the person count varies. Pose and threat run
concurrently (async BLS), over all frames of the dynamic batch at once.
"""

import asyncio
import json

import numpy as np
import triton_python_backend_utils as pb_utils

from enrichment_light.core import contract as ct
from enrichment_light.core.params import parameters
from enrichment_light.serving import pipeline
from enrichment_light.serving.triton import input_array, to_responses

_INPUTS = (ct.IMAGE_BYTES, ct.CONF_THRESHOLD, ct.IOU_THRESHOLD)


class TritonPythonModel:
    def initialize(self, args):
        try:
            self.settings = pipeline.EnrichSettings.from_parameters(parameters(json.loads(args["model_config"])))
        except ValueError as err:
            raise pb_utils.TritonModelException(f"enrich: {err}") from err
        if self.settings.threat.mapping.unmapped:
            pb_utils.Logger.log_warn(
                f"enrich: class names not in the threat taxonomy: {list(self.settings.threat.mapping.unmapped)}"
            )

    async def _infer(self, model, input_name, batch, output_name):
        request = pb_utils.InferenceRequest(
            model_name=model,
            requested_output_names=[output_name],
            inputs=[pb_utils.Tensor(input_name, batch)],
            preferred_memory=pb_utils.PreferredMemory(pb_utils.TRITONSERVER_MEMORY_CPU, 0),
        )
        response = await request.async_exec()
        if response.has_error():
            raise pb_utils.TritonModelException(f"enrich: {model} failed: {response.error().message()}")
        return pb_utils.get_output_tensor_by_name(response, output_name).as_numpy()

    async def _embed(self, crops):
        sizes = [len(c) for c in crops]
        if not sum(sizes):
            return [np.zeros((0, ct.EMBEDDING_DIMENSION), np.float32) for _ in crops]
        everyone = np.concatenate(crops)
        parts = await asyncio.gather(
            *(
                self._infer(ct.REID_MODEL, ct.CROPS, everyone[s], ct.EMBEDDINGS)
                for s in pipeline.chunks(len(everyone), ct.MAX_PERSONS_PER_FRAME)
            )
        )
        return np.split(np.concatenate(parts), np.cumsum(sizes)[:-1])

    async def execute(self, requests):
        inputs = [tuple(input_array(pb_utils, r, n) for n in _INPUTS) for r in requests]
        frames, errors = pipeline.enrich_prepare(inputs, self.settings)
        if not frames:
            return to_responses(pb_utils, errors)
        groups = pipeline.by_shape(frames)  # rect letterbox: one detector batch per frame shape
        calls = []
        for idx in groups:
            boxed = np.stack([frames[k].boxed for k in idx])
            calls.append(self._infer(ct.POSE_MODEL, ct.IMAGES, boxed, ct.RAW_OUTPUT))
            calls.append(self._infer(ct.THREAT_MODEL, ct.IMAGES, boxed, ct.RAW_OUTPUT))
        raws = await asyncio.gather(*calls)
        pose_raw, threat_raw = [None] * len(frames), [None] * len(frames)
        for g, idx in enumerate(groups):
            for j, k in enumerate(idx):
                pose_raw[k], threat_raw[k] = raws[2 * g][j], raws[2 * g + 1][j]
        outputs, crops, owners = pipeline.enrich_postprocess(frames, pose_raw, threat_raw, self.settings)
        embeddings = await self._embed(crops)
        return to_responses(pb_utils, pipeline.enrich_finish(frames, outputs, embeddings, owners, errors))
