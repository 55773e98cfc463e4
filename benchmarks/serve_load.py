"""Load test of `mspn serve`: N concurrent client streams through NAME_stream, nothing mixed up.

    python benchmarks/serve_load.py --model DIR --data /tmp/mm32 [--streams 1,4,16,64] [--seconds 8]

Starts the server (the pytriton wheel's tritonserver, Python backend over mspn.runtime), then for
each N runs N client threads (gRPC, one connection each) for --seconds; every stream pushes real
test clips of the dataset, a different clip per stream, each clip one Triton sequence. Reports
aggregate frames/s, per-request latency p50/p90/p99, and the batch sizes Triton formed (model
statistics), and checks every sequence's predictions against the same clip run alone through
Predictor (max abs <= 1e-5). Then the error cases, while 4 other streams run and are checked too:
a client that vanishes mid-sequence, a wrong shape, a wrong dtype, a sequence id never started,
and the live-sequence limit. Writes --report (JSON) and a Markdown table beside it.
"""
from __future__ import annotations

import argparse
import json
import platform
import threading
import time
from pathlib import Path

import numpy as np

from mspn.errors import MSPNError
from mspn.options import ServeOptions
from mspn.runtime import Predictor
from mspn.serve import client as tc
from mspn.serve.command import start_server
from mspn.serve.triton import Ports

TOLERANCE = 1e-5


def load_clips(data: str, count: int) -> list[np.ndarray]:
    """The first ``count`` test clips of a dataset folder: (T, C, H, W) uint8 each."""
    paths = sorted((Path(data) / "test").glob("*.npy"))[:count]
    if len(paths) < count:
        raise MSPNError(f"{data}/test holds {len(paths)} clips, {count} needed")
    return [np.load(p) for p in paths]


def solo_runs(predictor: Predictor, clips: list[np.ndarray]) -> list[np.ndarray]:
    """Each clip pushed alone through a StreamSession: (T, C, H, W) float32 predictions."""
    out = []
    for clip in clips:
        with predictor.stream() as session:
            out.append(np.stack(list(session.feed(clip.astype(np.float32) / 255.0))))
    return out


class Stream(threading.Thread):
    """One client: its own connection, its own clips, sequence after sequence until ``stop``."""

    def __init__(self, url: str, model: str, index: int, clips: list[int], data: list, solo: list, stop):
        super().__init__(daemon=True)
        self.url, self.model, self.index, self.clips = url, model, index, clips
        self.data, self.solo, self.stop = data, solo, stop
        self.latencies: list[float] = []
        self.frames, self.sequences, self.worst, self.errors = 0, 0, 0.0, []

    def run(self):
        client = tc.connect(self.url)
        turn = 0
        while not self.stop.is_set():
            clip_index = self.clips[turn % len(self.clips)]
            sequence_id = (self.index + 1) * 1_000_000 + turn
            try:
                got = self._sequence(client, self.data[clip_index] .astype(np.float32) / 255.0, sequence_id)
            except MSPNError as exc:
                self.errors.append(str(exc))
                return
            self.worst = max(self.worst, float(np.abs(got - self.solo[clip_index]).max()))
            self.sequences += 1
            turn += 1

    def _sequence(self, client, clip: np.ndarray, sequence_id: int) -> np.ndarray:
        predictions = []
        for t in range(len(clip)):
            start = time.perf_counter()
            predictions.append(tc.step(client, self.model, clip[t][None], sequence_id, start=t == 0,
                                       end=t == len(clip) - 1)[0])
            self.latencies.append(time.perf_counter() - start)
            self.frames += 1
        return np.stack(predictions)


def batch_counts(url: str, model: str) -> dict[int, int]:
    """{batch size: executions} from Triton's model statistics."""
    stats = tc.connect(url).get_inference_statistics(model, as_json=True)["model_stats"][0]
    return {int(b["batch_size"]): int(b["compute_infer"]["count"]) for b in stats.get("batch_stats", [])}


def run_level(url: str, model: str, streams: int, seconds: float, data: list, solo: list) -> dict:
    """N streams for ``seconds``; stream i uses clips i, i + N, ... (different per stream)."""
    before = batch_counts(url, model)
    stop = threading.Event()
    threads = [Stream(url, model, i, list(range(i, len(data), streams)) or [i % len(data)], data, solo, stop)
               for i in range(streams)]
    begin = time.perf_counter()
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - begin
    after = batch_counts(url, model)
    formed = {size: after.get(size, 0) - before.get(size, 0) for size in sorted(after)}
    latencies = np.array([x for t in threads for x in t.latencies]) * 1e3
    steps = sum(formed.values())
    return {"streams": streams, "seconds": round(elapsed, 2), "frames": int(sum(t.frames for t in threads)),
            "frames_per_s": round(sum(t.frames for t in threads) / elapsed, 1),
            "latency_ms": {q: round(float(np.percentile(latencies, int(q[1:]))), 2) for q in ("p50", "p90", "p99")},
            "batches": {k: v for k, v in formed.items() if v},
            "mean_batch": round(sum(k * v for k, v in formed.items()) / steps, 2) if steps else None,
            "sequences_checked": int(sum(t.sequences for t in threads)),
            "worst_max_abs": float(max(t.worst for t in threads)),
            "errors": [e for t in threads for e in t.errors]}


def _expect_error(call, pattern: str) -> str:
    try:
        call()
    except MSPNError as exc:
        if pattern not in str(exc):
            raise AssertionError(f"expected an error with {pattern!r}, got: {exc}") from None
        return str(exc).split(": ", 1)[-1][:160]
    raise AssertionError(f"expected an error with {pattern!r}, the request succeeded")


def error_cases(url: str, model: str, limit: int, idle_s: float, data: list, solo: list) -> dict:
    """The error cases while 4 streams run (and are checked); returns {case: the server's answer}."""
    stop = threading.Event()
    threads = [Stream(url, model, 900 + i, [i], data, solo, stop) for i in range(4)]
    for thread in threads:
        thread.start()
    client = tc.connect(url)
    frame = data[0][0][None].astype(np.float32) / 255.0
    cases = {}
    tc.step(client, model, frame, 5_000_001, start=True)  # then the client vanishes
    cases["wrong shape"] = _expect_error(lambda: tc.step(client, model, frame[..., :16], 5_000_002, start=True),
                                         "unexpected shape")
    cases["wrong dtype"] = _expect_error(lambda: tc.step(client, model, frame.astype(np.float64), 5_000_003,
                                                         start=True), "data-type")
    cases["never started"] = _expect_error(lambda: tc.step(client, model, frame, 5_000_004), "START")
    opened = [6_000_000 + i for i in range(limit - 4 - 1)]  # the 4 streams and the vanished one hold the rest
    for sequence_id in opened:
        tc.step(client, model, frame, sequence_id, start=True)
    cases["live-sequence limit"] = _expect_error(lambda: tc.step(client, model, frame, 7_000_000, start=True),
                                                 "live-sequence limit reached")
    for sequence_id in opened:
        tc.step(client, model, frame, sequence_id, end=True)
    time.sleep(idle_s + 1.0)
    cases["vanished client, after the idle timeout"] = _expect_error(
        lambda: tc.step(client, model, frame, 5_000_001), "START")
    stop.set()
    for thread in threads:
        thread.join()
    others = {"sequences_checked": sum(t.sequences for t in threads),
              "worst_max_abs": max(t.worst for t in threads), "errors": [e for t in threads for e in t.errors]}
    return {"answers": cases, "other_streams": others}


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="model folder from `mspn export`")
    parser.add_argument("--data", required=True, help="dataset folder; its test clips are streamed")
    parser.add_argument("--streams", default="1,4,16,64")
    parser.add_argument("--seconds", type=float, default=8.0, help="per level")
    parser.add_argument("--max-queue-delay-us", type=int, default=1000)
    parser.add_argument("--idle-timeout-s", type=float, default=3.0)
    parser.add_argument("--threads", type=int, default=1,
                        help="ONNX Runtime threads in the server (1: leaves the other core to Triton and clients)")
    parser.add_argument("--report", default="benchmarks/results/2026-12-01-serve-load.json")
    args = parser.parse_args()
    levels = [int(n) for n in args.streams.split(",")]
    data = load_clips(args.data, max(levels) * 2)
    limit = max(levels) + 8
    with Predictor.load(args.model) as predictor:
        solo = solo_runs(predictor, data)
    ports = Ports.free()
    options = ServeOptions(model=args.model, http_port=ports.http, grpc_port=ports.grpc, metrics_port=ports.metrics,
                           max_queue_delay_us=args.max_queue_delay_us, max_sequences=limit,
                           idle_timeout_s=args.idle_timeout_s, threads=args.threads)
    server, names = start_server(options)
    try:
        url, model = server.grpc_url, names["stream"]
        run_level(url, model, 1, 1.0, data, solo)  # warm-up
        results = []
        for n in levels:
            results.append(run_level(url, model, n, args.seconds, data, solo))
            print(json.dumps(results[-1]), flush=True)
        errors = error_cases(url, model, limit, args.idle_timeout_s, data, solo)
        print(json.dumps(errors, indent=1), flush=True)
    finally:
        server.stop()
    report = {"model": args.model, "data": args.data, "cpu": cpu_name(), "options": vars(args),
              "max_sequences": limit, "levels": results, "error_cases": errors}
    write_report(Path(args.report), report)
    failed = [r for r in results if r["worst_max_abs"] > TOLERANCE or r["errors"]]
    other = errors["other_streams"]
    failed += [other] if other["worst_max_abs"] > TOLERANCE or other["errors"] else []
    return 1 if failed else 0


def write_report(path: Path, report: dict) -> None:
    from mspn.fileio import atomic_write_json, atomic_write_text
    atomic_write_json(path, report)
    single = report["levels"][0]["frames_per_s"]
    lines = ["| streams | frames/s | x one stream | p50 ms | p90 ms | p99 ms | mean batch | batches formed "
             "(size: count) | sequences checked | worst max abs |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["levels"]:
        lat = r["latency_ms"]
        lines.append(f"| {r['streams']} | {r['frames_per_s']} | {r['frames_per_s'] / single:.2f} | {lat['p50']} | "
                     f"{lat['p90']} | {lat['p99']} | {r['mean_batch']} | "
                     f"{', '.join(f'{k}: {v}' for k, v in r['batches'].items())} | {r['sequences_checked']} | "
                     f"{r['worst_max_abs']:.1e} |")
    lines += ["", "Error cases (answered while 4 other streams ran):", ""]
    lines += [f"- {case}: `{answer}`" for case, answer in report["error_cases"]["answers"].items()]
    other = report["error_cases"]["other_streams"]
    lines.append(f"- the other streams: {other['sequences_checked']} sequences checked, worst max abs "
                 f"{other['worst_max_abs']:.1e}, errors: {len(other['errors'])}")
    atomic_write_text(path.with_suffix(".md"), "\n".join(lines) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
