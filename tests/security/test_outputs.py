"""Outputs never clobber: non-regular files, inputs and unusable paths are refused before any work."""
from __future__ import annotations

import os
import re
import stat

import numpy as np
import pytest

from mspn.errors import MSPNError
from mspn.fileio import atomic_write_bytes

from .conftest import refuse, snapshot


def _predict(tiny, npy_input, out, *extra):
    return ["predict", "--model", tiny["model"], "--input", npy_input, "--out", out, *extra]


def test_fifo_at_the_output_path_is_refused_and_kept(tiny, npy_input, tmp_path, capsys):
    fifo = tmp_path / "out.npy"
    os.mkfifo(fifo)
    before = snapshot(tmp_path)
    err = refuse(_predict(tiny, npy_input, fifo), capsys)
    assert "exists and is a FIFO, not a regular file; refusing to replace it" in err
    assert snapshot(tmp_path) == before and stat.S_ISFIFO(fifo.lstat().st_mode)


def test_device_node_at_the_output_path_is_refused_and_kept(tiny, npy_input, tmp_path, capsys):
    node = tmp_path / "null"
    try:
        os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # /dev/null's numbers, in tmp_path
    except PermissionError:
        pytest.skip("creating a device node needs CAP_MKNOD")
    before = snapshot(tmp_path)
    err = refuse(_predict(tiny, npy_input, node), capsys)
    assert "exists and is a device node" in err
    assert snapshot(tmp_path) == before and stat.S_ISCHR(node.lstat().st_mode)


def test_symlink_at_the_output_path_is_refused_and_its_target_kept(tiny, npy_input, tmp_path, capsys):
    target = tmp_path / "precious.txt"
    target.write_text("keep me")
    link = tmp_path / "out.npy"
    link.symlink_to(target)
    before = snapshot(tmp_path)
    err = refuse(_predict(tiny, npy_input, link), capsys)
    assert "exists and is a symbolic link" in err
    assert snapshot(tmp_path) == before


def test_out_equal_to_input_is_refused(tiny, npy_input, tmp_path, capsys, video):
    before = snapshot(tmp_path)
    assert "is the input file" in refuse(_predict(tiny, npy_input, npy_input), capsys)
    same = tmp_path / "." / npy_input.name  # another spelling of the same path
    assert "is the input file" in refuse(_predict(tiny, npy_input, same), capsys)
    assert snapshot(tmp_path) == before
    err = refuse(["predict", "--model", tiny["model"], "--video", video, "--out", video], capsys)
    assert "is the input file" in err


@pytest.mark.parametrize("make_out, match", [
    (lambda tmp: tmp, r"exists and is a folder"),
    (lambda tmp: "", r"empty output path"),
    (lambda tmp: (tmp / "file.txt", (tmp / "file.txt").write_text("x"))[0] / "out.npy", r"file.txt is not a folder"),
], ids=["folder", "empty", "inside-a-file"])
def test_unusable_output_paths_are_refused_before_any_work(tiny, npy_input, tmp_path, capsys, make_out, match):
    out = make_out(tmp_path)
    before = snapshot(tmp_path)
    err = refuse(_predict(tiny, npy_input, out), capsys)
    assert re.search(match, err), err
    assert snapshot(tmp_path) == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_unwritable_output_folder_is_refused(tiny, npy_input, tmp_path, capsys):
    folder = tmp_path / "ro"
    folder.mkdir(mode=0o555)
    assert "is not writable" in refuse(_predict(tiny, npy_input, folder / "o.npy"), capsys)


def test_video_and_gif_outputs_are_all_checked_before_work(tiny, video, tmp_path, capsys):
    os.mkfifo(tmp_path / "clip.gif")
    before = snapshot(tmp_path)
    err = refuse(["predict", "--model", tiny["model"], "--video", video, "--out", tmp_path / "o.avi",
                  "--gif", tmp_path / "clip.gif"], capsys)
    assert "--gif" in err and "FIFO" in err
    assert snapshot(tmp_path) == before  # no half-written video either


def test_replaced_file_keeps_its_permissions_and_new_files_follow_the_umask(tmp_path):
    existing = tmp_path / "shared.npy"
    existing.write_bytes(b"old")
    existing.chmod(0o664)
    atomic_write_bytes(existing, b"new")
    assert existing.read_bytes() == b"new" and stat.S_IMODE(existing.stat().st_mode) == 0o664
    old = os.umask(0o027)
    try:
        atomic_write_bytes(tmp_path / "fresh.npy", b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "fresh.npy").stat().st_mode) == 0o640  # not mkstemp's 0600


def test_video_writer_refuses_a_fifo_and_follows_the_umask(tmp_path):
    from mspn.runtime.video import write_video

    image = np.zeros((16, 16, 3), np.uint8)
    os.mkfifo(tmp_path / "v.avi")
    with pytest.raises(MSPNError, match=r"v.avi exists and is a FIFO"):
        write_video(tmp_path / "v.avi", [image] * 2, 5.0)
    old = os.umask(0o022)
    try:
        write_video(tmp_path / "w.avi", [image] * 2, 5.0)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "w.avi").stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.avi", "w.avi"]  # no temporaries left


def test_failing_overwrite_leaves_the_old_dataset_intact(tmp_path, capsys, monkeypatch):
    from mspn.cli import main

    out = tmp_path / "data"
    assert main(["data", "synth", "--out", str(out), "--videos", "2,1,1", "--frames", "4"]) == 0
    capsys.readouterr()
    before = snapshot(out)
    import mspn.data.synth as synth

    def broken(*args, **kwargs):
        raise MSPNError("the generator failed half-way")
    monkeypatch.setattr(synth, "bouncing_video", broken)  # a failure after the writer has started
    assert "failed half-way" in refuse(["data", "synth", "--out", out, "--videos", "2,1,1", "--overwrite"], capsys)
    after = {k: v for k, v in snapshot(out).items() if not k.startswith(".staging-")}
    assert after == before
    monkeypatch.undo()
    assert main(["data", "synth", "--out", str(out), "--videos", "3,1,1", "--frames", "4", "--overwrite"]) == 0
    assert len(list((out / "train").iterdir())) == 3 and not list(out.glob(".staging-*"))


def test_eval_checks_its_report_and_pictures_before_any_work(tiny, tmp_path, capsys):
    os.mkfifo(tmp_path / "r_strip.png")
    before = snapshot(tmp_path)
    err = refuse(["eval", "--ckpt", tiny["ckpt"], "--data", tmp_path / "no-data", "--report", tmp_path / "r.json"],
                 capsys)
    assert "r_strip.png exists and is a FIFO" in err  # before the missing dataset is even looked at
    assert snapshot(tmp_path) == before
