"""Predictor over ONNX Runtime and OpenVINO against the PyTorch reference backend (tiny config)."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from mspn.errors import MSPNError
from mspn.runtime import Predictor

ATOL = 1e-4  # predictions here have std ~0.08; fp32 graph-vs-eager differences are ~1e-6


@pytest.fixture(scope="module")
def predictors(tiny):
    loaded = {
        "torch": Predictor.load(tiny["model"], backend="torch", ckpt=tiny["ckpt"]),
        "onnxruntime": Predictor.load(tiny["model"], backend="onnxruntime", threads=1),
        "openvino": Predictor.load(tiny["model"], backend="openvino", threads=1),
    }
    yield loaded
    for predictor in loaded.values():
        predictor.close()


def _stream(predictor, clips, n):
    session = predictor.stream()
    pushed = [session.push(clips[:, t]) for t in range(clips.shape[1])]
    return np.stack(pushed, axis=1), session.rollout(n)


def test_reference_predictions_are_not_trivial(predictors, clips):
    future = predictors["torch"].predict(clips)
    assert future.shape == (3, 5, 1, 32, 32) and future.dtype == np.float32
    assert future.std() > 0.03 and np.abs(np.diff(future, axis=1)).max() > 0.01


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_rollout_and_stream_match_torch(predictors, clips, backend):
    ref, run = predictors["torch"], predictors[backend]
    np.testing.assert_allclose(run.predict(clips), ref.predict(clips), atol=ATOL, rtol=0)
    ref_pushed, ref_ahead = _stream(ref, clips, 7)
    pushed, ahead = _stream(run, clips, 7)
    np.testing.assert_allclose(pushed, ref_pushed, atol=ATOL, rtol=0)
    np.testing.assert_allclose(ahead, ref_ahead, atol=ATOL, rtol=0)


@pytest.mark.parametrize("backend", ["torch", "onnxruntime", "openvino"])
def test_stream_rollout_equals_predict(predictors, clips, backend):
    predictor = predictors[backend]
    _, ahead = _stream(predictor, clips, predictor.horizon)
    np.testing.assert_allclose(ahead, predictor.predict(clips), atol=ATOL, rtol=0)


def test_rollout_in_pieces_equals_one_rollout_and_any_n(predictors, clips):
    predictor = predictors["onnxruntime"]
    _, whole = _stream(predictor, clips, 12)  # longer than the exported horizon (5)
    session = predictor.stream()
    for t in range(5):
        session.push(clips[:, t])
    pieces = np.concatenate([session.rollout(2), session.rollout(1), session.rollout(9)], axis=1)
    np.testing.assert_array_equal(pieces, whole)
    session.reset()  # reset: back to the initial state, any batch
    session.push(clips[:1, 0])
    assert session.batch == 1


def test_push_returns_the_pending_prediction(predictors, clips):
    session = predictors["onnxruntime"].stream()
    for t in range(5):
        nxt = session.push(clips[:, t])
    np.testing.assert_array_equal(session.rollout(1)[:, 0], nxt)


def test_uint8_input_is_scaled(predictors, clips):
    predictor = predictors["onnxruntime"]
    as_uint8 = (clips * 255).round().astype(np.uint8)
    np.testing.assert_allclose(predictor.predict(as_uint8), predictor.predict(as_uint8 / np.float32(255)),
                               atol=1e-6)


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_one_predictor_many_threads(predictors, clips, backend):
    predictor = predictors[backend]
    inputs = [np.ascontiguousarray(np.roll(clips, k, axis=-1)) for k in range(4)]
    expected = [(predictor.predict(x), _stream(predictor, x, 6)) for x in inputs]
    results, errors = [None] * 4, []

    def work(i):
        try:
            for _ in range(3):
                results[i] = (predictor.predict(inputs[i]), _stream(predictor, inputs[i], 6))
        except Exception as exc:  # surfaced below: a thread's exception would otherwise vanish
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    for (future, (pushed, ahead)), (ef, (ep, ea)) in zip(results, expected, strict=True):
        np.testing.assert_array_equal(future, ef)
        np.testing.assert_array_equal(pushed, ep)
        np.testing.assert_array_equal(ahead, ea)


def test_last_latency_is_recorded(predictors, clips):
    predictor = predictors["onnxruntime"]
    predictor.predict(clips)
    before = predictor.rollout_runner.last_latency
    predictor.predict(clips)
    assert predictor.rollout_runner.last_latency > 0 and predictor.rollout_runner.last_latency != before


# --- wrong order and bad input ----------------------------------------------------------------

def test_rollout_before_push_is_refused(predictors):
    with pytest.raises(MSPNError, match=r"rollout\(\) before any push\(\)"):
        predictors["onnxruntime"].stream().rollout(3)


def test_stream_errors(predictors, clips):
    session = predictors["onnxruntime"].stream()
    session.push(clips[:, 0])
    with pytest.raises(MSPNError, match=r"holds batch 3 .* has batch 1; call reset\(\)"):
        session.push(clips[:1, 1])
    for bad in (0, -2, 2.5, True):
        with pytest.raises(MSPNError, match=r"whole number n >= 1"):
            session.rollout(bad)


def _with(clips, **change):
    x = clips.copy()
    for key, value in change.items():
        if key == "nan":
            x[1, 2, 0, 3, 4] = np.nan
        elif key == "inf":
            x[0, 0, 0, 0, 0] = np.inf
        elif key == "value":
            x[0, 0, 0, 0, 0] = value
    return x


BAD = [
    ("list", lambda c: c.tolist(), r"frames must be a numpy array \(B, T_ctx, C, H, W\), got list"),
    ("float64", lambda c: c.astype(np.float64), r"uint8 \(0..255\) or float32 in \[0, 1\], got float64; cast"),
    ("int32", lambda c: c.astype(np.int32), r"uint8 \(0..255\) or float32 in \[0, 1\], got int32"),
    ("rank", lambda c: c[0], r"must be \(B, T_ctx, C, H, W\) = \(B, 5, 1, 32, 32\), got shape \(5, 1, 32, 32\)"),
    ("channels", lambda c: np.repeat(c, 3, axis=2), r"has 3 channels \(axis 2\) but this model takes 1 \(gray\)"),
    ("size", lambda c: c[..., :16, :], r"frame size 16x32 \(HxW\) does not match the model's 32x32"),
    ("context", lambda c: c[:, :4], r"has 4 context frames \(axis 1\) but this model takes exactly 5"),
    ("batch0", lambda c: c[:0], r"batch 0 is outside the model's range 1..8"),
    ("batch9", lambda c: np.concatenate([c, c, c]), r"batch 9 is outside the model's range 1..8"),
    ("nan", lambda c: _with(c, nan=1), r"contains NaN or inf \(1 values, first at index \(1, 2, 0, 3, 4\)\)"),
    ("inf", lambda c: _with(c, inf=1), r"contains NaN or inf"),
    ("range", lambda c: _with(c, value=-0.5), r"must lie in \[0, 1\] for float32 input: min -0.5 is below 0"),
    ("0..255", lambda c: c * 255, r"max 229.5 is above 1 \(0..255 values\? pass uint8 or divide by 255\)"),
]


@pytest.mark.parametrize("make, match", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_clip_messages(predictors, clips, make, match):
    with pytest.raises(MSPNError, match=match):
        predictors["onnxruntime"].predict(make(clips))


def test_bad_frame_messages(predictors, clips):
    session = predictors["openvino"].stream()
    with pytest.raises(MSPNError,
                       match=r"frame must be \(B, C, H, W\) = \(B, 1, 32, 32\), got shape \(3, 5, 1, 32, 32\)"):
        session.push(clips)
    with pytest.raises(MSPNError, match=r"frame frame size 32x16 \(HxW\) does not match"):
        session.push(clips[:, 0, :, :, :16])
    assert not session.frames_pushed  # a refused frame leaves the session untouched


def test_closed_predictor_refuses(tiny, clips):
    predictor = Predictor.load(tiny["model"])
    session = predictor.stream()
    predictor.close()
    with pytest.raises(MSPNError, match="predictor was closed"):
        predictor.predict(clips)
    with pytest.raises(MSPNError, match="predictor was closed"):
        session.push(clips[:, 0])


def test_onnxruntime_io_binding_stream_matches(tiny, predictors, clips):
    """The IO-binding step path (used on GPUs, state kept as bound OrtValues) run on the CPU."""
    with Predictor.load(tiny["model"], io_binding=True, threads=1) as bound:
        session = bound.stream()
        assert not isinstance(bound.step_runner.new_state(bound.initial_state)["h_0"], np.ndarray)
        pushed, ahead = _stream(bound, clips, 6)
    ref_pushed, ref_ahead = _stream(predictors["onnxruntime"], clips, 6)
    np.testing.assert_array_equal(pushed, ref_pushed)
    np.testing.assert_array_equal(ahead, ref_ahead)
    session.close()


def test_each_graph_is_loaded_by_its_first_use_only(tiny, clips):
    with Predictor.load(tiny["model"], threads=1) as predictor:
        assert not predictor.rollout_runner.is_active and not predictor.step_runner.is_active
        predictor.predict(clips)
        assert predictor.rollout_runner.is_active
        assert not predictor.step_runner.is_active  # rollouts alone never load the step graph
        predictor.stream().push(clips[:, 0])
        assert predictor.step_runner.is_active
    assert not predictor.step_runner.is_active  # closed with the predictor
    assert not predictor.rollout_runner.is_active


def test_a_streaming_predictor_never_loads_the_rollout_graph(tiny, clips):
    with Predictor.load(tiny["model"], threads=1) as predictor:
        predictor.stream().push(clips[:, 0])
        assert predictor.step_runner.is_active and not predictor.rollout_runner.is_active


def test_reset_waits_for_no_one_and_refuses_during_use(predictors, clips):
    """reset() takes the session's lock like push and rollout: while another thread holds the
    session, it is refused instead of freeing the state under a running step."""
    session = predictors["onnxruntime"].stream()
    session.push(clips[:, 0])
    with session._guard():  # what a push or rollout in another thread holds
        with pytest.raises(MSPNError, match="in use by another thread"):
            session.reset()
    session.reset()
    assert session.batch is None and not session.frames_pushed
