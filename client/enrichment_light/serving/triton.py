"""Glue between Python-backend requests/responses and the pure pipeline.

Functions take the ``triton_python_backend_utils`` module as an argument (``pb``), so that this
package never imports it (it exists only inside the backend stub) and tests can pass a fake.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np

from enrichment_light.core.errors import InvalidInputError

T = TypeVar("T")


def input_array(pb: Any, request: Any, name: str) -> np.ndarray | None:
    """The named input of a request as a NumPy array, or ``None`` when absent (optional inputs)."""
    tensor = pb.get_input_tensor_by_name(request, name)
    return None if tensor is None else tensor.as_numpy()


def guard(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T | InvalidInputError:
    """Call `fn`; an :class:`InvalidInputError` is returned instead of raised (one request's error)."""
    try:
        return fn(*args, **kwargs)
    except InvalidInputError as err:
        return err


def error_response(pb: Any, err: BaseException) -> Any:
    """An error response: ``INVALID_ARG`` for bad input, ``INTERNAL`` otherwise; names the problem."""
    if isinstance(err, InvalidInputError):
        return pb.InferenceResponse(error=pb.TritonError(str(err), pb.TritonError.INVALID_ARG))
    return pb.InferenceResponse(error=pb.TritonError(f"{type(err).__name__}: {err}", pb.TritonError.INTERNAL))


def to_responses(pb: Any, results: Sequence[dict[str, np.ndarray] | BaseException]) -> list[Any]:
    """One response per result: the output tensors, or the error."""
    responses = []
    for result in results:
        if isinstance(result, BaseException):
            responses.append(error_response(pb, result))
        else:
            responses.append(pb.InferenceResponse(output_tensors=[pb.Tensor(k, v) for k, v in result.items()]))
    return responses
