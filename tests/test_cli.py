"""The command line's conventions: help for every flag and examples for every command, --version,
-q / -v through the "mspn" logger only, one name per concept, exit status 0 / 1 / 2 / 130, and
the one-line error naming the extra a command lacks."""
from __future__ import annotations

import argparse
import logging
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import mspn
from mspn.cli import EXAMPLES, build_parser, main, subcommands

REPO = Path(__file__).resolve().parents[1]


def _leaves():
    """(path, parser) of every command that runs (not the `mspn data` group)."""
    return [(path, p) for path, p in subcommands(build_parser())
            if not any(isinstance(a, argparse._SubParsersAction) for a in p._actions)]


def _flags(parser):
    return [a for a in parser._actions if a.help != argparse.SUPPRESS]


def test_every_flag_has_help_and_every_command_examples():
    missing = [f"mspn {path} {'/'.join(a.option_strings) or a.dest}" for path, p in subcommands(build_parser())
               for a in _flags(p) if not isinstance(a, argparse._SubParsersAction) and not (a.help or "").strip()]
    assert not missing, f"flags without help: {missing}"
    for path, parser in subcommands(build_parser()):
        text = parser.format_help()
        assert "examples:\n  mspn " + path in text, f"`mspn {path} --help` shows no examples"
        assert parser.description, f"mspn {path} has no description"
    assert set(EXAMPLES) == {path for path, _ in subcommands(build_parser())}, "EXAMPLES names a missing command"


def test_top_level_help_describes_the_tool(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    out = capsys.readouterr().out
    assert done.value.code == 0
    for words in ("Predict the next frames of a video", "without PyTorch", "Exit status", "examples:"):
        assert words in out


def test_version(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"mspn {mspn.__version__}"
    out = subprocess.run([sys.executable, "-m", "mspn", "--version"], capture_output=True, text=True,
                         cwd=REPO, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == f"mspn {mspn.__version__}"


def test_every_command_takes_quiet_and_verbose():
    for path, parser in _leaves():
        strings = {s for a in parser._actions for s in a.option_strings}
        assert {"-q", "--quiet", "-v", "--verbose"} <= strings, f"mspn {path} lacks -q/-v"
    with pytest.raises(SystemExit) as done:  # one or the other
        build_parser().parse_args(["data", "synth", "--out", "x", "-q", "-v"])
    assert done.value.code == 2


def test_one_name_per_concept():
    """--model DIR is the model folder wherever one is taken; --variant(s) names the folder's
    exported graphs (fp32/fp16/int8); --precision only the backend's arithmetic (f32/bf16)."""
    for path, parser in _leaves():
        flags = {s: a for a in _flags(parser) for s in a.option_strings}
        positionals = [a.dest for a in _flags(parser) if not a.option_strings]
        assert not any("model" in dest for dest in positionals), f"mspn {path} takes the model positionally"
        if "--precision" in flags:
            assert set(flags["--precision"].choices) <= {"f32", "bf16"}, path
        if "--variant" in flags:
            assert set(flags["--variant"].choices) == {"fp32", "fp16", "int8"}, path
    for command in ("predict", "bench", "build-engine"):
        (model,) = [a for a in _flags(dict(_leaves())[command]) if "--model" in a.option_strings]
        assert model.metavar == "DIR", command


def test_old_spellings_still_work_with_a_note(capsys):
    args = build_parser().parse_args(["build-engine", "FOLDER"])
    assert args.model == "FOLDER"
    assert "MODEL_DIR is deprecated; use --model DIR" in capsys.readouterr().err
    args = build_parser().parse_args(["export", "--ckpt", "c", "--out", "o", "--precision", "fp16"])
    assert args.variants == "fp16"
    assert "--precision is deprecated; use --variants" in capsys.readouterr().err
    with pytest.warns(DeprecationWarning, match="use variants="):
        from mspn.options import ExportOptions
        assert ExportOptions("c", "o", precisions="fp16").variants == ("fp32", "fp16")


# --- logging: the "mspn" logger only, never the root logger or stdout ---------------------------

def _logging_synth(monkeypatch):
    """`mspn data synth` whose library call logs one message per level."""
    def fake(out, **_):
        log = logging.getLogger("mspn.data")
        log.debug("DEBUG-LINE")
        log.info("INFO-LINE")
        log.warning("WARNING-LINE")
        return {"videos": {"train": 1, "val": 1, "test": 1}, "channels": 1, "size": [16, 16]}
    monkeypatch.setattr("mspn.data.synth.write_synthetic", fake)


@pytest.mark.parametrize("flag, shown, hidden", [
    ([], ["INFO-LINE", "WARNING-LINE"], ["DEBUG-LINE"]),
    (["-q"], ["WARNING-LINE"], ["INFO-LINE", "DEBUG-LINE"]),
    (["--verbose"], ["DEBUG-LINE", "INFO-LINE", "WARNING-LINE"], []),
])
def test_quiet_and_verbose_set_the_mspn_logger_only(monkeypatch, capsys, flag, shown, hidden):
    _logging_synth(monkeypatch)
    root = logging.getLogger()
    before = (root.level, list(root.handlers), logging.getLogger("mspn").level, logging.getLogger("mspn").handlers[:])
    assert main(["data", "synth", "--out", "unused", *flag]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("wrote 1 train") and out.count("\n") == 1  # stdout: the result only
    assert all(s in err for s in shown) and not any(s in err for s in hidden), err
    assert (root.level, list(root.handlers), logging.getLogger("mspn").level,
            logging.getLogger("mspn").handlers[:]) == before


def test_quiet_turns_progress_bars_off(tmp_path, capsys):
    args = ["data", "synth", "--out", str(tmp_path / "d"), "--size", "16x16", "--videos", "2,1,1", "--frames", "3"]
    assert main(args) == 0
    assert "synthetic videos" in capsys.readouterr().err  # tqdm's bar
    assert main([*args, "--overwrite", "-q"]) == 0
    assert capsys.readouterr().err == ""
    assert main([*args, "--overwrite"]) == 0  # and back on for the next command
    assert "synthetic videos" in capsys.readouterr().err


# --- exit status -----------------------------------------------------------------------------

def test_usage_errors_exit_2(capsys, tmp_path):
    with pytest.raises(SystemExit) as done:  # argparse's own
        main(["predict", "--no-such-flag"])
    assert done.value.code == 2
    capsys.readouterr()
    # values the options refuse, and options that exclude each other: one line, 2
    assert main(["bench", "--model", str(tmp_path), "--runs", "0"]) == 2
    assert capsys.readouterr().err == "mspn bench: error: --runs must be >= 1, got 0\n"
    assert main(["predict", "--model", str(tmp_path), "--out", "o.npy"]) == 2
    assert "give exactly one of --input X.npy or --video VIDEO" in capsys.readouterr().err
    assert main(["build-engine"]) == 2
    assert "--model DIR is required" in capsys.readouterr().err


def test_errors_during_a_run_exit_1(capsys, tmp_path):
    assert main(["bench", "--model", str(tmp_path / "none"), "--report", str(tmp_path / "r.json")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("mspn bench: error: ") and err.count("\n") == 1


def test_interrupt_exits_130_in_process(monkeypatch, capsys):
    def interrupted(*_, **__):
        raise KeyboardInterrupt
    monkeypatch.setattr("mspn.data.synth.write_synthetic", interrupted)
    assert main(["data", "synth", "--out", "unused"]) == 130
    assert capsys.readouterr().err == "mspn data: interrupted\n"


def test_ctrl_c_exits_130(tmp_path, subprocess_env):
    out = tmp_path / "d"
    proc = subprocess.Popen([sys.executable, "-m", "mspn", "data", "synth", "--out", str(out), "--size", "64x64",
                             "--videos", "100000", "-q"], cwd=REPO, env=subprocess_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            # A shell runs background jobs with SIGINT ignored, and Python keeps it
                            # ignored: restore the default so the child gets its KeyboardInterrupt.
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 60
    while not any(out.glob("*/*.npy")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)  # until it is writing videos
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "mspn data: interrupted" and "Traceback" not in err


# --- a missing extra -------------------------------------------------------------------------

def test_missing_optional_dependency_names_the_extra(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "tqdm", None)  # as when the train extra is not installed
    assert main(["data", "synth", "--out", str(tmp_path / "d")]) == 1
    assert capsys.readouterr().err == ("mspn data: error: this command needs the 'train' extra "
                                       "(tqdm is not installed): pip install 'mspn[train]'\n")


def test_a_missing_module_no_extra_provides_keeps_its_traceback(monkeypatch):
    def broken(*_, **__):
        import mspn_no_such_module  # noqa: F401
    monkeypatch.setattr("mspn.data.synth.write_synthetic", broken)
    with pytest.raises(ModuleNotFoundError, match="mspn_no_such_module"):
        main(["data", "synth", "--out", "unused"])
