"""Manifest checks, tampered files, the runner contract and the backend factory."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from mspn.errors import MSPNError
from mspn.runtime import Manifest, Predictor, make_runner


def _edit_manifest(folder, **changes):
    path = folder / "manifest.json"
    raw = json.loads(path.read_text())
    raw.update(changes)
    path.write_text(json.dumps(raw))


@pytest.mark.parametrize("name", ["step.onnx", "rollout.onnx", "initial_state.npz"])
def test_tampered_file_is_refused_by_name(model_copy, name):
    path = model_copy / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01  # one flipped bit
    path.write_bytes(bytes(data))
    with pytest.raises(MSPNError, match=rf"{name}: SHA-256 mismatch \(file tampered with, truncated or replaced"):
        Predictor.load(model_copy)


def test_truncated_and_missing_files_are_refused(model_copy):
    path = model_copy / "rollout.onnx"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(MSPNError, match=r"rollout.onnx: SHA-256 mismatch"):
        Predictor.load(model_copy, backend="openvino")
    path.unlink()
    with pytest.raises(MSPNError, match=r"rollout.onnx is missing from the model folder"):
        Predictor.load(model_copy)


def test_unlisted_file_is_refused(model_copy):
    raw = json.loads((model_copy / "manifest.json").read_text())
    del raw["files"]["step.onnx"]
    (model_copy / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(MSPNError, match=r"step.onnx is not listed in manifest.json files"):
        Predictor.load(model_copy)


def test_format_and_version_are_checked(model_copy, tmp_path):
    _edit_manifest(model_copy, format_version=2)
    with pytest.raises(MSPNError, match=r"format_version 2 is not supported \(this runtime reads version 1\)"):
        Manifest.load(model_copy)
    _edit_manifest(model_copy, format="something-else")
    with pytest.raises(MSPNError, match=r"not an mspn model manifest"):
        Manifest.load(model_copy)
    (model_copy / "manifest.json").write_text("{not json")
    with pytest.raises(MSPNError, match=r"manifest.json: not valid JSON"):
        Manifest.load(model_copy)
    with pytest.raises(MSPNError, match=r"no manifest.json; is this a model folder"):
        Manifest.load(tmp_path)
    with pytest.raises(MSPNError, match=r"model folder not found"):
        Manifest.load(tmp_path / "nope")


def test_missing_variant_backend_and_options(tiny):
    with pytest.raises(MSPNError, match=r"no fp16 rollout graph in this folder \(exported variants: fp32\); "
                                        r"re-export with --variants fp16"):
        Predictor.load(tiny["model"], variant="fp16")
    with pytest.raises(MSPNError, match=r"unknown variant 'fp8'"):
        Predictor.load(tiny["model"], variant="fp8")
    with pytest.raises(MSPNError, match=r"unknown backend 'tflite'; "
                                        r"choose one of onnxruntime, openvino, tensorrt, torch"):
        Predictor.load(tiny["model"], backend="tflite")
    with pytest.raises(MSPNError, match=r"unknown onnxruntime option\(s\): thread; known: "):
        Predictor.load(tiny["model"], thread=2)
    with pytest.raises(MSPNError, match=r"unknown openvino precision 'fp16'; choose f32 or bf16"):
        Predictor.load(tiny["model"], backend="openvino", precision="fp16")
    with pytest.raises(MSPNError, match=r"torch backend needs the checkpoint .* pass ckpt=PATH"):
        Predictor.load(tiny["model"], backend="torch")
    with pytest.raises(MSPNError, match=r"no TensorRT engine for the fp32 rollout graph; build one with "
                                        r"`mspn build-engine"):
        Predictor.load(tiny["model"], backend="tensorrt")


def test_torch_backend_refuses_another_models_checkpoint(tiny, tmp_path):
    from tests.runtime.runtime_ckpt import make_checkpoint

    other = make_checkpoint(tmp_path / "micro.pt", "micro")
    predictor = Predictor.load(tiny["model"], backend="torch", ckpt=other)  # graphs load on first use
    with pytest.raises(MSPNError, match=r"micro.pt: its model config .* is not the model folder's"):
        predictor.predict(np.zeros((1, predictor.context, 1, 32, 32), np.float32))


def test_onnxruntime_refuses_a_missing_gpu_provider(tiny):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has CUDA: the refusal cannot be shown here")
    with pytest.raises(MSPNError, match=r"this onnxruntime build has no CUDAExecutionProvider "
                                        r".* pip install 'mspn\[gpu\]'"):
        Predictor.load(tiny["model"], provider="cuda")


def test_onnxruntime_names_the_pair_that_hides_the_gpu_provider(tiny, monkeypatch):
    import onnxruntime

    from mspn import extras
    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has CUDA: the refusal cannot be shown here")
    monkeypatch.setattr(extras, "both_onnxruntimes", lambda: True)
    with pytest.raises(MSPNError, match=r"onnxruntime and onnxruntime-gpu are both installed, which hides "
                                        r"CUDAExecutionProvider; pip uninstall -y onnxruntime onnxruntime-gpu"):
        Predictor.load(tiny["model"], provider="cuda")


def test_openvino_precision_is_pinned(tiny):
    runner = make_runner("openvino", Manifest.load(tiny["model"]), "step", "fp32").activate()
    import openvino

    assert runner.compiled.get_property("INFERENCE_PRECISION_HINT") == openvino.Type.f32
    try:  # bf16 only on CPUs with bf16 units; elsewhere it must be refused, never silently f32
        bf16 = make_runner("openvino", runner.manifest, "step", "fp32", precision="bf16").activate()
    except MSPNError as exc:
        assert "inference precision" in str(exc) and "bf16 was asked for" in str(exc)
    else:
        assert bf16.compiled.get_property("INFERENCE_PRECISION_HINT") == openvino.Type.bf16


def test_runner_contract_validates_feeds(tiny):
    manifest = Manifest.load(tiny["model"])
    runner = make_runner("onnxruntime", manifest, "rollout", "fp32")
    frames = np.zeros((2, 5, 1, 32, 32), np.float32)
    with pytest.raises(MSPNError, match=r"not active; call activate\(\) first"):
        runner.infer({"frames": frames})
    with runner:
        meta = runner.input_metadata()
        assert list(meta) == ["frames"] and meta["frames"].shape == ("batch", 5, 1, 32, 32)
        assert runner.infer({"frames": frames})["future"].shape == (2, 5, 1, 32, 32)
        with pytest.raises(MSPNError, match=r"missing: frames; unexpected: clip"):
            runner.infer({"clip": frames})
        with pytest.raises(MSPNError, match=r"input frames must be a float32 array, got float64"):
            runner.infer({"frames": frames.astype(np.float64)})
        with pytest.raises(MSPNError, match=r"input frames axis 1 must be 5"):
            runner.infer({"frames": frames[:, :3]})
    step = make_runner("onnxruntime", manifest, "step", "fp32").activate()
    feed = {name: np.zeros((2, *spec.shape[1:]), np.float32) for name, spec in step.input_metadata().items()}
    feed["h_0"] = np.zeros((3, *feed["h_0"].shape[1:]), np.float32)
    with pytest.raises(MSPNError, match=r"axis 'batch' is 2 in one input but 3 in h_0"):
        step.infer(feed)
    step.deactivate()


@pytest.mark.parametrize("module, backend, extra", [("openvino", "openvino", "openvino"),
                                                     ("onnxruntime", "onnxruntime", "runtime")])
def test_missing_backend_names_its_extra(tiny, monkeypatch, module, backend, extra):
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail, as when not installed
    with pytest.raises(MSPNError,
                       match=rf"the {backend} backend needs the '{extra}' extra \({module} is not "
                             rf"installed\): pip install 'mspn\[{extra}\]'$"):
        Predictor.load(tiny["model"], backend=backend)
