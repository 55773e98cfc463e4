"""The two Triton Python-backend models of `mspn serve`; each generated ``model.py`` is one import
of a class here. They run inside Triton's Python-backend stub (``triton_python_backend_utils`` is
importable only there) on ``mspn.runtime`` (no torch).

- ``RolloutModel`` (``<name>_rollout``): "frames" (B, T_ctx, C, H, W) float32 in [0, 1] ->
  "future" (B, T_pred, C, H, W) float32. Triton's dynamic batcher gathers requests; one execute
  runs them as batches of up to the model folder's max batch.
- ``StreamModel`` (``<name>_stream``): "frame" (1, C, H, W) -> "next_frame" (1, C, H, W), with the
  control inputs START / END / READY / CORRID of Triton's sequence batcher; the recurrent state
  of every live sequence lives in a ``SequenceTable`` keyed by correlation id.
"""
from __future__ import annotations

import ctypes
import json

import numpy as np

from mspn.errors import MSPNError


def _pb():
    import triton_python_backend_utils as pb_utils  # only inside Triton's Python-backend stub
    return pb_utils


def _input(pb_utils, request, name: str) -> np.ndarray:
    """An input tensor as a numpy copy, through DLPack: the stub's ``as_numpy`` reads the wrong
    descriptor fields under numpy 2 (the wheel's stub was built against numpy 1)."""
    return np.array(np.from_dlpack(pb_utils.get_input_tensor_by_name(request, name)), copy=True)


class _Exported:
    """A DLPack producer over a numpy array that keeps its capsule. The stub marks a consumed
    capsule "used_dlpack", not the standard "used_dltensor", so numpy's capsule destructor would
    print a traceback per output; renaming it after the stub took it keeps the log clean (the stub
    frees the tensor itself: no leak, checked with 4 MB outputs)."""

    _USED = ctypes.c_char_p(b"used_dltensor")  # PyCapsule_SetName keeps this pointer: module lifetime

    def __init__(self, array: np.ndarray):
        self.array = np.ascontiguousarray(array)
        self.capsule = None

    def __dlpack__(self, *args, **kwargs):
        self.capsule = self.array.__dlpack__()
        return self.capsule

    def __dlpack_device__(self):
        return self.array.__dlpack_device__()

    def mark_used(self) -> None:
        if self.capsule is not None:
            set_name = ctypes.pythonapi.PyCapsule_SetName
            set_name.argtypes = (ctypes.py_object, ctypes.c_char_p)
            set_name(self.capsule, self._USED)


def _output(pb_utils, name: str, array: np.ndarray):
    """An output tensor through DLPack, for the same reason as ``_input``."""
    exported = _Exported(array)
    tensor = pb_utils.Tensor.from_dlpack(name, exported)
    exported.mark_used()
    return tensor


def _parameters(args: dict) -> dict[str, str]:
    config = json.loads(args["model_config"])
    return {k: v["string_value"] for k, v in config.get("parameters", {}).items()}


def _load_predictor(params: dict):
    from mspn.runtime import Predictor
    options = json.loads(params.get("backend_options", "{}"))
    return Predictor.load(params["model_dir"], backend=params["backend"], variant=params["variant"], **options)


def _error(pb_utils, message: str):
    return pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(message))


class RolloutModel:
    """``<name>_rollout``: context clips in, predicted clips out, requests batched together."""

    def initialize(self, args: dict) -> None:
        self.predictor = _load_predictor(_parameters(args))

    def execute(self, requests: list) -> list:
        pb_utils = _pb()
        clips, answers = [], [None] * len(requests)
        for i, request in enumerate(requests):
            frames = _input(pb_utils, request, "frames")
            try:
                clips.append((i, self.predictor.check_frames(frames, "frames", clip=True)))
            except MSPNError as exc:
                answers[i] = _error(pb_utils, str(exc))
        if clips:
            batch = np.concatenate([clip for _, clip in clips])
            future = np.concatenate([self.predictor.predict(batch[s:s + self.predictor.max_batch])
                                     for s in range(0, len(batch), self.predictor.max_batch)])
            offset = 0
            for i, clip in clips:
                part = future[offset:offset + len(clip)]
                offset += len(clip)
                answers[i] = pb_utils.InferenceResponse(output_tensors=[_output(pb_utils, "future", part)])
        return answers

    def finalize(self) -> None:
        self.predictor.close()


class StreamModel:
    """``<name>_stream``: one frame per request, per-sequence state, sequences batched per call."""

    def initialize(self, args: dict) -> None:
        from .sequences import SequenceTable
        params = _parameters(args)
        self.predictor = _load_predictor(params)
        self.table = SequenceTable(self.predictor, max_sequences=int(params["max_sequences"]),
                                   idle_seconds=float(params["idle_seconds"]))

    def execute(self, requests: list) -> list:
        from .sequences import StepRequest
        pb_utils = _pb()

        def control(request, name: str):
            return _input(pb_utils, request, name).reshape(-1)[0]

        active, steps = [], []
        for i, request in enumerate(requests):
            if not control(request, "READY"):
                continue  # an empty slot (direct strategy); the oldest strategy sends none
            active.append(i)
            steps.append(StepRequest(corrid=int(control(request, "CORRID")),
                                     frame=_input(pb_utils, request, "frame"),
                                     start=bool(control(request, "START")), end=bool(control(request, "END"))))
        results = self.table.run(steps)
        answers = [_error(pb_utils, "request not ready")] * len(requests)
        for i, result in zip(active, results, strict=True):
            answers[i] = (_error(pb_utils, result.error) if result.error is not None else
                          pb_utils.InferenceResponse(output_tensors=[_output(pb_utils, "next_frame",
                                                                                      result.prediction)]))
        return answers

    def finalize(self) -> None:
        self.predictor.close()
