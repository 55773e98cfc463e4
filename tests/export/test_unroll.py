"""rollout.onnx built by unrolling the exported step pieces in ONNX (mspn.export.unroll), against
the traced rollout and PyTorch, plus the refusals of pieces that cannot be unrolled."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from mspn.checkpoint import load_checkpoint, save_checkpoint
from mspn.config import PRESETS
from mspn.errors import MSPNError
from mspn.export import verify
from mspn.export.pipeline import ExportOptions, export_model
from mspn.export.unroll import pieces_from_step, unroll
from mspn.models.mspn import MSPN

CONTEXT, HORIZON = 3, 4


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    torch.manual_seed(1)
    config = PRESETS["micro"]()
    model = MSPN(config.model)
    with torch.no_grad():
        for cell in model.levels:
            cell.predict.weight.mul_(30.0)  # predictions of order 0.1-1, so parity means something
    path = tmp_path_factory.mktemp("unroll") / "micro.pt"
    save_checkpoint(path, config, model.state_dict())
    return path


@pytest.fixture(scope="module")
def folders(ckpt, tmp_path_factory):
    root = tmp_path_factory.mktemp("builds")
    out = {}
    for build in ("unrolled", "traced"):
        out[build] = root / build
        export_model(ExportOptions(ckpt=str(ckpt), out=str(out[build]), context=CONTEXT, horizon=HORIZON,
                                   exporter="dynamo", rollout=build, progress=False))
    return out


def test_unrolled_equals_traced_and_pytorch(folders, ckpt):
    frames = np.random.default_rng(5).random((3, CONTEXT, 1, 16, 16), dtype=np.float32)
    model = load_checkpoint(ckpt).build_model()
    with torch.no_grad():
        expected = model.rollout(torch.from_numpy(frames), HORIZON).numpy()
    got = {b: verify.rollout_outputs(verify.ort_session(f / "rollout.onnx"), frames) for b, f in folders.items()}
    assert got["unrolled"].shape == (3, HORIZON, 1, 16, 16)
    assert np.abs(got["unrolled"] - expected).max() < 1e-5
    assert np.abs(got["unrolled"] - got["traced"]).max() < 1e-5
    for build, folder in folders.items():
        record = json.loads((folder / "manifest.json").read_text())["export"]["rollout"]
        assert record["build"] == build and record["exporter"] == "dynamo"


def test_unrolled_rollout_stores_each_weight_once(folders):
    def big_initializers(path):
        return sorted(tuple(t.dims) for t in onnx.load(path).graph.initializer if np.prod(t.dims) >= 64)

    unrolled = folders["unrolled"]
    step = big_initializers(unrolled / "step.onnx")
    # The step graph's weights, plus the initial state (one tensor per state input, batch 1).
    state = sorted(tuple(v.shape) for v in np.load(unrolled / "initial_state.npz").values() if v.size >= 64)
    assert big_initializers(unrolled / "rollout.onnx") == sorted(step + state)
    model = onnx.load(unrolled / "rollout.onnx")
    assert sum(n.op_type == "Gather" and n.name.endswith("take_frame") for n in model.graph.node) == CONTEXT


def _identity_piece(inputs: list[str], outputs: list[str], op: str = "Identity") -> onnx.ModelProto:
    nodes = [helper.make_node(op, [i], [o]) for i, o in zip(inputs[-len(outputs):], outputs, strict=True)]
    values = lambda names: [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in names]  # noqa: E731
    return helper.make_model(helper.make_graph(nodes, "piece", values(inputs), values(outputs)))


def test_unroll_refuses_pieces_of_another_signature():
    names = ["h_0", "c_0", "pred_0"]
    good_open = _identity_piece(["frame"] + names, [n + "_out" for n in names])
    wrong_closed = _identity_piece(names, ["h_0_out", "c_0_out", "prediction"])
    initial = {n: np.zeros((1, 1, 2, 2), np.float32) for n in names}
    with pytest.raises(MSPNError, match=r"closed-loop step graph has inputs .* outputs .*'prediction'.*expected"):
        unroll(good_open, wrong_closed, initial, 2, 2, names)
    with pytest.raises(MSPNError, match="needs context and horizon >= 1, got 0 and 2"):
        unroll(good_open, good_open, initial, 0, 2, names)


def test_unroll_refuses_control_flow():
    names = ["h_0", "c_0", "pred_0"]
    branch = helper.make_graph([], "b", [], [helper.make_tensor_value_info("h_0", TensorProto.FLOAT, None)])
    piece = _identity_piece(["frame"] + names, [n + "_out" for n in names])
    piece.graph.node.append(helper.make_node("If", ["frame"], ["x"], then_branch=branch, else_branch=branch))
    initial = {n: np.zeros((1, 1, 2, 2), np.float32) for n in names}
    with pytest.raises(MSPNError, match=r"open-loop step graph has control flow \(If\).*--rollout traced"):
        unroll(piece, piece, initial, 1, 1, names)


def test_unrolled_pieces_run_in_onnxruntime():
    """A hand-made pair of pieces (state += frame when open, state *= 2 when closed) unrolls to
    the closed-form result, so the wiring (order, frame index, what is emitted) is checked on its own."""
    names = ["h_0", "c_0", "pred_0"]
    outs = [n + "_out" for n in names]
    values = lambda ns: [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ns]  # noqa: E731
    open_nodes = [helper.make_node("Add", [n, "frame"], [o]) for n, o in zip(names, outs, strict=True)]
    open_piece = helper.make_model(helper.make_graph(open_nodes, "open", values(["frame"] + names), values(outs)),
                                   opset_imports=[helper.make_opsetid("", 18)])
    two = helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])
    closed_nodes = [helper.make_node("Mul", [n, "two"], [o]) for n, o in zip(names, outs, strict=True)]
    closed_piece = helper.make_model(helper.make_graph(closed_nodes, "closed", values(names), values(outs),
                                                       initializer=[two]),
                                     opset_imports=[helper.make_opsetid("", 18)])
    initial = {n: np.full((1, 1, 2, 2), 0.5, np.float32) for n in names}
    model = unroll(open_piece, closed_piece, initial, context=3, horizon=3, state_names=names)
    onnx.checker.check_model(model, full_check=True)
    import onnxruntime as ort
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    frames = np.random.default_rng(0).random((2, 3, 1, 2, 2), dtype=np.float32)
    (future,) = session.run(None, {"frames": frames})
    first = 0.5 + frames.sum(axis=1)
    np.testing.assert_allclose(future, np.stack([first, 2 * first, 4 * first], axis=1), rtol=1e-6)


def _step_loop_and_unrolled(step_path, folder, frames):
    """(the step graph looped closed, the rollout unrolled from pieces_from_step of that graph)."""
    names = [v.name for v in onnx.load(step_path).graph.input][2:]
    init = dict(np.load(folder / "initial_state.npz"))
    loop = verify.run_step_loop(verify.session_step(verify.ort_session(step_path)), init, frames, HORIZON, names)
    open_step, closed_step = pieces_from_step(onnx.load(step_path), names)
    rollout = unroll(open_step, closed_step, init, CONTEXT, HORIZON, names)
    onnx.checker.check_model(rollout, full_check=True)
    path = step_path.parent / f"{step_path.stem}.from-step.rollout.onnx"
    onnx.save(rollout, path)
    return loop, verify.rollout_outputs(verify.ort_session(path), frames)


def test_rollout_cut_from_the_step_graph_is_the_step_loop(folders, tmp_path):
    """pieces_from_step: the rollout unrolled from a step graph computes the step loop, for the fp32
    graph and for an int8 one (whose scales it shares; the int8 rollout is built this way)."""
    from mspn.export import precision as prec

    folder = folders["unrolled"]
    frames = np.random.default_rng(7).random((2, CONTEXT, 1, 16, 16), dtype=np.float32)
    loop, unrolled = _step_loop_and_unrolled(folder / "step.onnx", folder, frames)
    exported = verify.rollout_outputs(verify.ort_session(folder / "rollout.onnx"), frames)
    assert np.abs(unrolled - loop).max() < 1e-5 and np.abs(unrolled - exported).max() < 1e-5

    names = [v.name for v in onnx.load(folder / "step.onnx").graph.input][2:]
    step = verify.session_step(verify.ort_session(folder / "step.onnx"))
    feeds = verify.record_step_feeds(step, dict(np.load(folder / "initial_state.npz")), frames, HORIZON, names)
    prec.to_int8(folder / "step.onnx", tmp_path / "step.int8.onnx", feeds, "MinMax")
    loop8, unrolled8 = _step_loop_and_unrolled(tmp_path / "step.int8.onnx", folder, frames)
    assert np.abs(loop8 - loop).max() > 1e-4  # really quantized
    assert np.abs(unrolled8 - loop8).max() < 1e-5


def test_pieces_from_step_refuses_a_graph_without_the_step_inputs():
    names = ["h_0", "c_0", "pred_0"]
    piece = _identity_piece(["frame"] + names, [n + "_out" for n in names])
    with pytest.raises(MSPNError, match=r"step graph has inputs \['frame', 'h_0', 'c_0', 'pred_0'\], "
                                        r"expected 'frame' and 'open_loop'"):
        pieces_from_step(piece, names)
