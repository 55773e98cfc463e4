"""The `mspn` command. Each subcommand parses its arguments and calls one library function.

Library imports happen inside the handlers so that `mspn --help` and torch-free subcommands
(predict/bench on a model folder) start fast and work on a runtime-only install.
"""
from __future__ import annotations

import argparse
import sys

from mspn.errors import MSPNError


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = text.lower().split("x")
        return int(h), int(w)
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like HxW (e.g. 96x128), got {text!r}") from None


# --- training and evaluation -------------------------------------------------------------------

def _add_train(sub):
    p = sub.add_parser("train", help="train MSPN (pixel stage, or adversarial with --adv)")
    p.add_argument("--config", default="tiny", help="preset name or YAML file")
    p.add_argument("--data", required=True, help="dataset folder with train/ and val/ splits")
    p.add_argument("--out", required=True, help="run folder (checkpoints, logs)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override, e.g. --set train.epochs=2 (repeatable)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.add_argument("--adv", action="store_true", help="adversarial stage (needs --init)")
    p.add_argument("--init", help="pixel checkpoint the adversarial generator starts from")

    def run(args):
        from mspn.train.run import train_from_args
        return train_from_args(args)
    p.set_defaults(handler=run)


def _add_eval(sub):
    p = sub.add_parser("eval", help="per-step metrics, plots and strips against copy-last-frame")
    p.add_argument("--ckpt", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--context", type=int)
    p.add_argument("--horizon", type=int)
    p.add_argument("--report", default="report.json", help="JSON report path; pictures go beside it")
    p.add_argument("--max-clips", type=int, default=0, help="0: every clip of the split")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lpips-weights", help="AlexNet ImageNet weights (.pth) for LPIPS")
    p.add_argument("--clip", action="store_true", help="clip predictions to [0, 1] before the metrics")

    def run(args):
        from mspn.evaluate import evaluate_from_args
        return evaluate_from_args(args)
    p.set_defaults(handler=run)


def _add_import_reference(sub):
    p = sub.add_parser("import-reference", help="convert a checkpoint of the authors' code")
    p.add_argument("--ckpt", required=True, help="reference checkpoint (model_state / g_model / bare)")
    p.add_argument("--config", required=True, help="paper-mnist, paper-rgb or a YAML config")
    p.add_argument("--out", required=True)
    p.add_argument("--size", type=_size, help="frame size HxW the weights were trained on")

    def run(args):
        from mspn.models.reference import import_reference_file
        import_reference_file(args.ckpt, args.config, args.out, size=args.size)
        print(f"wrote {args.out}")
    p.set_defaults(handler=run)


# -----------------------------------------------------------------------------------------------

COMMANDS = [_add_train, _add_eval, _add_import_reference]


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
