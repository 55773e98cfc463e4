"""SequenceTable (the stream model's state, without Triton): batched steps equal solo sessions,
limits, idle release and per-request errors."""
from __future__ import annotations

import numpy as np
import pytest

from mspn.runtime import Predictor
from mspn.serve.sequences import SequenceTable, StepRequest


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def predictor(tiny):
    with Predictor.load(tiny["model"]) as p:
        yield p


def test_batched_steps_equal_solo_sessions(predictor, clips):
    table = SequenceTable(predictor, max_sequences=8, idle_seconds=10)
    got = {0: [], 1: [], 2: []}
    for t in range(clips.shape[1]):
        results = table.run([StepRequest(i, clips[i, t][None], start=t == 0) for i in range(3)])
        for i, result in enumerate(results):
            assert result.error is None
            got[i].append(result.prediction[0])
    assert table.batch_sizes == [3] * clips.shape[1]  # one step-graph call per round
    for i in range(3):
        with predictor.stream() as session:
            solo = np.stack([session.push(clips[i, t][None])[0] for t in range(clips.shape[1])])
        np.testing.assert_allclose(np.stack(got[i]), solo, atol=1e-5)


def test_same_sequence_twice_in_one_call_runs_in_order(predictor, clips):
    table = SequenceTable(predictor, max_sequences=8, idle_seconds=10)
    results = table.run([StepRequest(5, clips[0, 0][None], start=True), StepRequest(5, clips[0, 1][None]),
                         StepRequest(6, clips[1, 0][None], start=True)])
    assert table.batch_sizes == [2, 1]
    with predictor.stream() as session:
        session.push(clips[0, 0][None])
        np.testing.assert_allclose(results[1].prediction, session.push(clips[0, 1][None]), atol=1e-5)


def test_limit_unknown_sequence_bad_frame_and_end(predictor, clips):
    table = SequenceTable(predictor, max_sequences=2, idle_seconds=10)
    frame = clips[0, 0][None]
    results = table.run([StepRequest(1, frame, start=True), StepRequest(2, frame * 4, start=True),
                         StepRequest(3, frame), StepRequest(4, frame, start=True)])
    assert results[0].error is None
    assert "values must lie in [0, 1]" in results[1].error
    assert "sequence 3 is not open" in results[2].error
    assert results[3].error is None and len(table) == 2
    refused = table.run([StepRequest(5, frame, start=True)])[0]
    assert refused.error.startswith("live-sequence limit reached: 2 sequences are open")
    table.run([StepRequest(1, frame, end=True)])
    assert len(table) == 1 and table.run([StepRequest(5, frame, start=True)])[0].error is None


def test_idle_sequences_are_released(predictor, clips):
    """A client that vanishes mid-sequence: its state goes after the idle timeout."""
    clock = Clock()
    table = SequenceTable(predictor, max_sequences=1, idle_seconds=5, clock=clock)
    frame = clips[0, 0][None]
    table.run([StepRequest(1, frame, start=True)])
    clock.now = 4.0
    assert table.run([StepRequest(2, frame, start=True)])[0].error.startswith("live-sequence limit")
    clock.now = 10.0
    assert table.run([StepRequest(2, frame, start=True)])[0].error is None
    assert "released after 5 s idle" in table.run([StepRequest(1, frame)])[0].error
