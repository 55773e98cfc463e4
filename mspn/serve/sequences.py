"""Per-stream recurrent state for the ``<name>_stream`` Triton model, independent of Triton.

Triton's sequence batcher (the "oldest" strategy) hands the model a list of requests, at most one
per sequence, each tagged with its correlation id and START / END flags. ``SequenceTable`` keeps
one state per live correlation id and runs the steps of all requests of a call as one batched
call of the step graph (state tensors stacked along the batch axis), so N streams cost about one
step, not N. It enforces the live-sequence limit and releases sequences idle for longer than the
server's ``max_sequence_idle_microseconds`` (Triton forgets them then but does not tell the model).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from mspn.errors import MSPNError


@dataclass
class StepRequest:
    """One request: the frame (1, C, H, W) float32 in [0, 1] of sequence ``corrid``."""

    corrid: int
    frame: np.ndarray
    start: bool = False
    end: bool = False


@dataclass
class StepResult:
    """The prediction of the next frame (1, C, H, W), or the error that answers the request."""

    prediction: np.ndarray | None = None
    error: str | None = None


class SequenceTable:
    """Live sequences' states {corrid: {state name: (1, ...) float32}} over one ``Predictor``."""

    def __init__(self, predictor, max_sequences: int, idle_seconds: float, clock=time.monotonic):
        self.predictor = predictor
        self.runner = predictor.step_runner.activate()
        self.max_sequences = max_sequences
        self.idle_seconds = idle_seconds
        self.clock = clock
        self.states: dict[int, dict[str, np.ndarray]] = {}
        self.last_used: dict[int, float] = {}
        self.batch_sizes: list[int] = []  # step-graph batch of every call, for tests and statistics

    def __len__(self) -> int:
        return len(self.states)

    def release_idle(self) -> list[int]:
        """Forget sequences idle for longer than the timeout; returns their ids."""
        now = self.clock()
        idle = [c for c, t in self.last_used.items() if now - t > self.idle_seconds]
        for corrid in idle:
            self.release(corrid)
        return idle

    def release(self, corrid: int) -> None:
        self.states.pop(corrid, None)
        self.last_used.pop(corrid, None)

    def run(self, requests: list[StepRequest]) -> list[StepResult]:
        """Answer every request, in order. Steps of different sequences run as one batch (split
        at the model's max batch); a bad request gets its error and the others still run."""
        self.release_idle()
        results = [StepResult() for _ in requests]
        ready: list[int] = []
        for i, request in enumerate(requests):
            try:
                self._admit(request)
                ready.append(i)
            except MSPNError as exc:
                results[i].error = str(exc)
        for group in self._rounds([requests[i] for i in ready], ready):
            for start in range(0, len(group), self.predictor.max_batch):
                self._step([requests[i] for i in group[start:start + self.predictor.max_batch]],
                           [results[i] for i in group[start:start + self.predictor.max_batch]])
        for request, result in zip(requests, results, strict=True):
            if request.end or (result.error is not None and request.start):
                self.release(request.corrid)
        return results

    def _admit(self, request: StepRequest) -> None:
        """Check the frame; START opens (or restarts) the sequence's state, within the limit."""
        request.frame = self.predictor.check_frames(request.frame, "frame", clip=False)
        if request.frame.shape[0] != 1:
            raise MSPNError(f"a stream request carries one frame (1, C, H, W), got shape {request.frame.shape}")
        if request.start:
            if request.corrid not in self.states and len(self.states) >= self.max_sequences:
                raise MSPNError(f"live-sequence limit reached: {self.max_sequences} sequences are open; "
                                f"end one (sequence_end) or start the server with a larger --max-sequences")
            self.states[request.corrid] = {k: v.copy() for k, v in self.predictor.initial_state.items()}
        elif request.corrid not in self.states:
            raise MSPNError(f"sequence {request.corrid} is not open (never started, ended, or released "
                            f"after {self.idle_seconds:g} s idle); send its first frame with sequence_start")
        self.last_used[request.corrid] = self.clock()

    @staticmethod
    def _rounds(requests: list[StepRequest], indices: list[int]) -> list[list[int]]:
        """Group request indices so that no group holds one sequence twice (Triton's oldest
        strategy never sends that, but a sequence's steps must stay in order if it did)."""
        rounds: list[tuple[set, list[int]]] = []
        for request, index in zip(requests, indices, strict=True):
            for seen, group in rounds:
                if request.corrid not in seen and all(g < index for g in group):
                    seen.add(request.corrid)
                    group.append(index)
                    break
            else:
                rounds.append(({request.corrid}, [index]))
        return [group for _, group in rounds]

    def _step(self, requests: list[StepRequest], results: list[StepResult]) -> None:
        """One call of the step graph for these sequences: states stacked along the batch axis."""
        runner = self.runner
        names = self.predictor.manifest.state_names
        feed = {"frame": np.concatenate([r.frame for r in requests]).astype(runner.dtype_of("frame"), copy=False),
                "open_loop": np.ones(len(requests), runner.dtype_of("open_loop"))}
        for name in names:
            feed[name] = np.concatenate([self.states[r.corrid][name] for r in requests]).astype(
                runner.dtype_of(name), copy=False)
        out = runner.infer(feed)
        self.batch_sizes.append(len(requests))
        for i, (request, result) in enumerate(zip(requests, results, strict=True)):
            self.states[request.corrid] = {n: np.asarray(out[f"{n}_out"][i:i + 1], np.float32) for n in names}
            result.prediction = np.asarray(out["next_frame"][i:i + 1], dtype=np.float32)
