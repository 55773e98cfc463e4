"""Clients of the served models with ``tritonclient`` (HTTP or gRPC, the same calls for both).

    client = connect("127.0.0.1:8001", "grpc")
    future = rollout(client, "tiny_rollout", clip)      # (B, T_ctx, C, H, W) -> (B, T_pred, C, H, W)
    nxt = step(client, "tiny_stream", frame, sequence_id=7, start=True)   # (1, C, H, W) -> (1, C, H, W)

A stream is one Triton sequence: its first frame carries ``start``, its last ``end``; the server
keeps the recurrent state between them.
"""
from __future__ import annotations

import importlib

import numpy as np

from mspn.errors import MSPNError


def _module(protocol: str):
    if protocol not in ("grpc", "http"):
        raise MSPNError(f"protocol must be grpc or http, got {protocol!r}")
    try:
        return importlib.import_module(f"tritonclient.{protocol}")
    except ImportError:
        raise MSPNError("tritonclient is not installed; install it with pip install 'mspn[serve]'") from None


def connect(url: str, protocol: str = "grpc"):
    """A tritonclient InferenceServerClient for host:port (a leading scheme is dropped)."""
    url = url.split("://", 1)[-1]
    return _module(protocol).InferenceServerClient(url)


def _protocol(client) -> str:
    return "grpc" if type(client).__module__.startswith("tritonclient.grpc") else "http"


def _inputs(client, name: str, array: np.ndarray) -> list:
    from tritonclient.utils import np_to_triton_dtype
    tensor = _module(_protocol(client)).InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
    tensor.set_data_from_numpy(array)
    return [tensor]


def _call(client, model: str, inputs: list, output: str, **sequence) -> np.ndarray:
    from tritonclient.utils import InferenceServerException
    try:
        return client.infer(model, inputs, **sequence).as_numpy(output)
    except InferenceServerException as exc:
        raise MSPNError(f"{model}: {exc.message()}") from None
    except OSError as exc:  # the HTTP client's connection errors
        raise MSPNError(f"{model}: cannot reach the server ({exc})") from None


def rollout(client, model: str, frames: np.ndarray) -> np.ndarray:
    """frames (B, T_ctx, C, H, W) float32 in [0, 1] -> (B, T_pred, C, H, W) float32."""
    return _call(client, model, _inputs(client, "frames", frames), "future")


def step(client, model: str, frame: np.ndarray, sequence_id: int, start: bool = False,
         end: bool = False, open_loop: float | None = None) -> np.ndarray:
    """One frame (1, C, H, W) float32 in [0, 1] of a sequence -> the next frame's prediction.

    open_loop: for `mspn export-triton` repositories, whose step model takes it (1: a real
    frame; 0: ignore the frame, continue on the model's own prediction); `mspn serve` takes none.
    """
    inputs = _inputs(client, "frame", frame)
    if open_loop is not None:
        inputs += _inputs(client, "open_loop", np.full((frame.shape[0], 1), open_loop, np.float32))
    return _call(client, model, inputs, "next_frame", sequence_id=sequence_id, sequence_start=start,
                 sequence_end=end)


def stream_frames(client, model: str, frames, sequence_id: int):
    """Push (C, H, W) frames (uint8, or float32 in [0, 1]) through one sequence, yielding each
    prediction (C, H, W); the sequence ends with the last frame (or is left to time out if the
    iterator raises)."""
    iterator = iter(frames)
    current = next(iterator, None)
    first = True
    while current is not None:
        following = next(iterator, None)
        x = current.astype(np.float32) / 255.0 if current.dtype == np.uint8 else current
        yield step(client, model, np.ascontiguousarray(x[None], np.float32), sequence_id, start=first,
                   end=following is None)[0]
        first, current = False, following


def find_stream_model(client) -> str:
    """The one ready ``*_stream`` model on the server (a one-line error if none or several)."""
    index = client.get_model_repository_index(**({"as_json": True} if _protocol(client) == "grpc" else {}))
    models = index.get("models", []) if isinstance(index, dict) else index
    names = sorted(m["name"] for m in models if m["name"].endswith("_stream") and m.get("state") == "READY")
    if len(names) != 1:
        raise MSPNError(f"the server has {len(names)} ready *_stream models ({', '.join(names) or 'none'}); "
                        f"`mspn serve` serves exactly one")
    return names[0]


def model_layout(client, model: str) -> tuple[int, tuple[int, int], str]:
    """(channels, (H, W), channel order) of a served stream model, from its configuration."""
    config = client.get_model_config(model, **({"as_json": True} if _protocol(client) == "grpc" else {}))
    config = config.get("config", config)
    channels, height, width = (int(d) for d in config["input"][0]["dims"])
    order = config.get("parameters", {}).get("channel_order", {}).get("string_value", "bgr")
    return channels, (height, width), order


def predict_server(options) -> None:
    """`mspn predict --server URL (--video V | --source SRC) --out OUT`: the frames stream through
    the server's stream model as one sequence; OUT as for --source."""
    import random

    from mspn.runtime.commands import source_summary
    from mspn.runtime.sources import open_sink, open_source, run_source

    source = options.source or options.video
    if source is None or (options.source and options.video):
        raise MSPNError("--server needs exactly one of --video VIDEO or --source SRC")
    if options.model or options.input or options.lead != 1 or options.gif:
        raise MSPNError("--server streams frames (lead 1); --model, --input, --lead and --gif do not apply")
    protocol = "http" if options.server.startswith(("http://", "https://")) else "grpc"
    client = connect(options.server, protocol)
    try:
        model = find_stream_model(client)
        channels, size, order = model_layout(client, model)
    except MSPNError:
        raise
    except Exception as exc:  # tritonclient raises its own types, and plain socket errors
        raise MSPNError(f"cannot reach a Triton server at {options.server}: {exc}") from None
    frames, fps = open_source(source, size, channels, order, options.max_frames)
    sequence_id = random.getrandbits(62) + 1  # unique among the server's other clients, in practice
    summary = run_source(frames, lambda tapped: stream_frames(client, model, tapped, sequence_id),
                         open_sink(options.out, fps, order))
    print(f"{source_summary(options.out, summary)} (server {options.server}, model {model})")
