"""`mspn inspect`: what a model folder (or a bare graph copied out of one) holds, as text. Torch-free.

A folder: its model facts, every variant's graphs (I/O, weights file, parity), the files with
their sizes and SHA-256 checked against the manifest, the graphs' metadata_props, the TensorRT
engines and the load cache. A bare .onnx: its metadata_props, I/O and external weights files.
"""
from __future__ import annotations

from pathlib import Path

from mspn.errors import MSPNError
from mspn.fileio import sha256_file
from mspn.options import InspectOptions

from .manifest import CACHE_FOLDER, GRAPHS, MANIFEST, Manifest, external_data_files


def _size(nbytes: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if nbytes < 1024 or unit == "GiB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    return ""


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    return ["  " + "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]


def _tensors(specs, state: tuple[str, ...] = ()) -> str:
    """"frame (batchx1x32x32), open_loop (batch) + 6 state": the recurrent state only counted."""
    state_like = [t for t in specs if t.name in state or t.name.removesuffix("_out") in state]
    text = ", ".join(f"{t.name} ({'x'.join(str(d) for d in t.shape)})" for t in specs if t not in state_like)
    return text + (f" + {len(state_like)} state" if state_like else "")


def graph_facts(path: Path) -> dict | None:
    """{"metadata", "inputs", "outputs"} of an ONNX file, read without its weights; None without onnx."""
    try:
        import onnx
    except ImportError:
        return None
    model = onnx.load(str(path), load_external_data=False)

    def dims(value):
        return "x".join(d.dim_param or str(d.dim_value) for d in value.type.tensor_type.shape.dim)
    return {"metadata": {p.key: p.value for p in model.metadata_props},
            "inputs": ", ".join(f"{v.name} ({dims(v)})" for v in model.graph.input),
            "outputs": ", ".join(f"{v.name} ({dims(v)})" for v in model.graph.output)}


def _overview(m: Manifest) -> list[str]:
    raw = m.raw
    batch = raw["batch"]
    return [f"model folder {m.folder}",
            f"  config {raw.get('name', '?')}: {m.context} -> {m.horizon} frames of {m.frame_size[0]}x"
            f"{m.frame_size[1]}, {m.channels} channel(s) ({m.channel_order}), batch {batch['min']}..{batch['max']}"
            f"{' (dynamic)' if batch.get('dynamic') else ' (static)'}",
            f"  exported by mspn {raw.get('versions', {}).get('mspn', '?')} ({raw.get('exporter', '?')} exporter, "
            f"opset {raw.get('opset', '?')}); state: {', '.join(m.state_names)}"]


def _variants(m: Manifest) -> list[str]:
    variants = m.raw.get("verification", {}).get("variants", {})
    fp32 = m.raw.get("verification", {}).get("fp32", {})
    rows = [["variant", "graph", "file", "weights", "inputs", "outputs", "parity"]]
    for variant in m.variants:
        for kind in GRAPHS:
            g = m.graph(kind, variant)
            if variant == "fp32":
                key = "worst_max_abs" if kind == "rollout" else "step_loop_worst_max_abs"
                parity = f"max abs {fp32[key]:.2e}" if key in fp32 else "-"
            else:
                psnr = variants.get(variant, {}).get(kind, {}).get("min_psnr")
                parity = f"min PSNR {psnr:.1f} dB" if psnr is not None else "-"
            rows.append([variant, kind, g.file, ", ".join(g.external) or "embedded",
                         _tensors(g.inputs, m.state_names), _tensors(g.outputs, m.state_names), parity])
    return ["variants (graphs, I/O, parity against PyTorch fp32):", *_table(rows), *_openvino_int8(m)]


def _openvino_int8(m: Manifest) -> list[str]:
    """Which int8 OpenVINO runs: the folder's NNCF model (with its budget figures next to the QDQ
    graph's, both run by OpenVINO at export) or the ONNX QDQ graph, and why."""
    if "int8" not in m.variants:
        return []
    record = m.raw.get("verification", {}).get("variants", {}).get("int8", {}).get("openvino") or {}
    models = {kind: m.graph(kind, "int8").openvino for kind in GRAPHS}
    if not all(models.values()):
        why = record.get("reason") or "the folder has no OpenVINO int8 model"
        return [f"openvino int8: the ONNX QDQ graphs ({why})"]
    lines = ["openvino int8: NNCF models (runs them instead of the QDQ graphs; load with int8='qdq' for those)"]
    for kind, ir in models.items():
        figures = []
        for label, result in (("nncf", record.get("nncf", {}).get("budget", {}).get(kind)),
                              ("qdq", record.get("qdq_budget", {}).get(kind))):
            if result:
                figures.append(f"{label} {result['min_psnr']:.1f} dB")
        lines.append(f"  {kind}: {ir.file} + {ir.weights}" + (f"; min per-step PSNR vs fp32 on openvino: "
                                                              f"{', '.join(figures)}" if figures else ""))
    return lines


def _files(m: Manifest) -> tuple[list[str], bool]:
    rows, ok = [["file", "size", "sha256"]], True
    for name, expected in sorted(m.files.items()):
        path = m.folder / name
        if not path.is_file():
            status, size, ok = "MISSING", "-", False
        else:
            size = _size(path.stat().st_size)
            status = "verified" if sha256_file(path) == expected else "MISMATCH (tampered or replaced)"
            ok = ok and status == "verified"
        rows.append([name, size, f"{expected[:12]}... {status}"])
    unlisted = sorted(p.relative_to(m.folder).as_posix() for p in m.folder.rglob("*")
                      if p.is_file() and p.name != MANIFEST and p.relative_to(m.folder).parts[0] != CACHE_FOLDER
                      and p.relative_to(m.folder).as_posix() not in m.files)
    rows += [[name, _size((m.folder / name).stat().st_size), "not in the manifest (never loaded)"]
             for name in unlisted]
    total = sum((m.folder / n).stat().st_size for n in m.files if (m.folder / n).is_file())
    return [f"files ({_size(total)} listed):", *_table(rows)], ok


def _metadata(m: Manifest) -> list[str]:
    """The graphs' metadata_props: what all share once, then what each adds."""
    per_file = {}
    for variant in m.variants:
        for kind in GRAPHS:
            file = m.graph(kind, variant).file
            facts = graph_facts(m.folder / file) if (m.folder / file).is_file() else {}
            if facts is None:
                return ["graph metadata_props: (install onnx to read them: pip install onnx)"]
            per_file[file] = (facts or {}).get("metadata") or {}
    common = dict(set.intersection(*(set(d.items()) for d in per_file.values()))) if per_file else {}
    shared = [k for k in next(iter(per_file.values()), {}) if k in common]
    lines = ["graph metadata_props:"]
    if shared:
        lines.append("  every graph: " + ", ".join(f"{k}={common[k]}" for k in shared))
    for file, meta in per_file.items():
        rest = ", ".join(f"{k}={v}" for k, v in meta.items() if k not in common)
        lines.append(f"  {file}: {rest or ('none (exported before mspn stamped them)' if not meta else '-')}")
    return lines


def _engines(m: Manifest) -> list[str]:
    if not m.engines:
        return ["TensorRT engines: none (mspn build-engine adds them)"]
    rows = [["engine", "graph", "variant", "gpu", "compute", "tensorrt", "hardware compat"]]
    for name, r in sorted(m.engines.items()):
        rows.append([name, r.get("graph", "?"), r.get("variant", "?"), r.get("gpu", "?"),
                     r.get("compute_capability", "?"), r.get("tensorrt_version", "?"),
                     r.get("hardware_compatibility") or "none"])
    return ["TensorRT engines:", *_table(rows)]


def _cache(m: Manifest) -> list[str]:
    root = m.folder / CACHE_FOLDER
    if not root.is_dir():
        return [f"load cache: none yet in {CACHE_FOLDER}/ (made by the first load on each backend)"]
    parts = [f"{b.name} {_size(sum(p.stat().st_size for p in b.rglob('*') if p.is_file()))}"
             for b in sorted(root.iterdir()) if b.is_dir()]
    return [f"load cache ({CACHE_FOLDER}/, this machine): {', '.join(parts) or 'empty'}"]


def describe_folder(folder: str | Path) -> tuple[str, bool]:
    """(the report, whether every listed file matched its SHA-256)."""
    m = Manifest.load(folder)
    files, ok = _files(m)
    sections = [_overview(m), _variants(m), files, _metadata(m), _engines(m), _cache(m)]
    return "\n".join(line for section in sections for line in [*section, ""]).rstrip() + "\n", ok


def describe_graph(path: str | Path) -> str:
    """A bare .onnx file: its mspn metadata, I/O and the external weights files it reads."""
    path = Path(path)
    facts = graph_facts(path)
    if facts is None:
        raise MSPNError("reading a bare .onnx graph needs the onnx package: pip install onnx")
    meta = facts["metadata"]
    lines = [f"graph {path} ({_size(path.stat().st_size)})",
             f"  inputs:  {facts['inputs']}", f"  outputs: {facts['outputs']}",
             f"  external weights: {', '.join(external_data_files(path)) or 'none (embedded)'}",
             "  metadata_props:" if meta else "  metadata_props: none"]
    lines += [f"    {k} = {v}" for k, v in meta.items()]
    return "\n".join(lines) + "\n"


def inspect_command(options: InspectOptions) -> int:
    """Print the report; 1 when a listed file is missing or changed (the folder would not load)."""
    target = Path(options.model)
    if target.is_file() and target.suffix == ".onnx":
        print(describe_graph(target), end="")
        return 0
    report, ok = describe_folder(target)
    print(report, end="")
    return 0 if ok else 1
