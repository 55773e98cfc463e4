"""`mspn inspect`: a folder's variants, graphs, files (checked), metadata, engines; a bare graph."""
from __future__ import annotations

import json
import re

from mspn.cli import main
from mspn.runtime.manifest import Manifest


def test_inspect_describes_a_folder(tiny, capsys):
    assert main(["inspect", "--model", str(tiny["model"])]) == 0
    out = capsys.readouterr().out
    manifest = Manifest.load(tiny["model"])
    assert f"config tiny: {manifest.context} -> {manifest.horizon} frames of 32x32" in out
    assert re.search(r"fp32\s+rollout\s+rollout.onnx\s+weights.bin\s+frames \(batchx5x1x32x32\)", out)
    assert re.search(r"fp32\s+step\s+step.onnx\s+weights.bin\s+frame \(batchx1x32x32\), open_loop \(batch\) "
                     r"\+ 6 state", out)
    for name in manifest.files:
        assert re.search(rf"{re.escape(name)}\s+\S+ \S+\s+{manifest.files[name][:12]}\.\.\. verified", out)
    assert re.search(r"every graph: .*mspn.config=tiny.*mspn.variant=fp32", out)
    assert "rollout.onnx: mspn.graph=rollout" in out and "step.onnx: mspn.graph=step" in out
    assert "TensorRT engines: none" in out


def test_inspect_flags_a_changed_file_and_lists_engines(model_copy, capsys):
    raw = json.loads((model_copy / "manifest.json").read_text())
    raw["engines"] = {"step.fp32.engine": {"graph": "step", "variant": "fp32", "gpu": "NVIDIA L4",
                                           "compute_capability": "8.9", "tensorrt_version": "10.3.0",
                                           "hardware_compatibility": "ampere_plus"}}
    (model_copy / "manifest.json").write_text(json.dumps(raw))
    with open(model_copy / "weights.bin", "r+b") as handle:
        handle.seek(100)
        handle.write(b"\x01\x02")
    assert main(["inspect", "--model", str(model_copy)]) == 1
    out = capsys.readouterr().out
    assert re.search(r"weights.bin\s+.*MISMATCH", out)
    assert re.search(r"step.fp32.engine\s+step\s+fp32\s+NVIDIA L4\s+8.9\s+10.3.0\s+ampere_plus", out)


def test_inspect_reads_a_bare_graph(tiny, capsys):
    assert main(["inspect", "--model", str(tiny["model"] / "step.onnx")]) == 0
    out = capsys.readouterr().out
    assert "external weights: weights.bin" in out
    for line in ("mspn.graph = step", "mspn.variant = fp32", "mspn.config = tiny", "mspn.context = 5",
                 "mspn.channel_order = gray", "mspn.state_names = h_0,c_0,pred_0,h_1,c_1,pred_1"):
        assert line in out


def test_inspect_of_a_missing_folder_is_one_line(tmp_path, capsys):
    assert main(["inspect", "--model", str(tmp_path / "nope")]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model folder not found" in err[0]
