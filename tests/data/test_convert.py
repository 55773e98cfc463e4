"""Converters, each run on small files in the real format that the test writes itself."""
import gzip
import json
import struct

import cv2
import numpy as np
import pytest

from mspn.cli import main
from mspn.data.caltech import convert_caltech, read_seq
from mspn.data.frames import resize
from mspn.data.h36m import convert_h36m
from mspn.data.kitti import convert_kitti
from mspn.data.kth import convert_kth
from mspn.data.mmnist import convert_mmnist, read_idx_images
from mspn.errors import MSPNError


def _moving_bar(t, h, w, colour=False):
    """A frame (h, w, 3) BGR with a bright bar at a position depending on t."""
    frame = np.full((h, w, 3), 30, np.uint8)
    frame[:, 8 * t + 4:8 * t + 16] = (60, 200, 250) if colour else 200
    return frame


def _info(out):
    return json.loads((out / "info.json").read_text())


# --- KTH ---------------------------------------------------------------------------------------

def _write_avi(path, frames):
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (w, h))
    assert writer.isOpened()
    for frame in frames:
        writer.write(frame)
    writer.release()


@pytest.fixture
def kth_src(tmp_path):
    src = tmp_path / "kth"
    for i, name in enumerate(["person01_boxing_d1", "person15_walking_d2", "person17_running_d4",
                              "person26_jogging_d1"]):
        folder = src / name.split("_")[1]
        folder.mkdir(parents=True, exist_ok=True)
        _write_avi(folder / f"{name}_uncomp.avi", [_moving_bar(t + i, 120, 160) for t in range(6)])
    (src / "boxing" / "readme.txt").write_text("not a video")
    return src


def test_kth_split_by_person_and_resize(tmp_path, kth_src):
    out = tmp_path / "out"
    info = convert_kth(kth_src, out, size=(48, 64))
    assert sorted(p.name for p in (out / "train").iterdir()) == ["person01_boxing_d1.npy"]
    assert sorted(p.name for p in (out / "val").iterdir()) == ["person15_walking_d2.npy"]
    assert sorted(p.name for p in (out / "test").iterdir()) == ["person17_running_d4.npy"]
    assert info["skipped"] == ["person26_jogging_d1_uncomp.avi"]
    assert _info(out)["channel_order"] == "bgr" and info["size"] == [48, 64] and info["channels"] == 3
    video = np.load(out / "train" / "person01_boxing_d1.npy")
    assert video.shape == (6, 3, 48, 64) and video.dtype == np.uint8
    expected = cv2.resize(_moving_bar(2, 120, 160), (64, 48))      # the authors' default: bilinear
    assert np.abs(video[2].transpose(1, 2, 0).astype(int) - expected).mean() < 6  # MJPG is lossy
    assert info["resize"] == "cv2.INTER_LINEAR"


def test_resize_is_bilinear_by_default_and_area_on_request():
    frame = np.random.default_rng(0).integers(0, 256, (128, 160, 3), dtype=np.uint8)
    linear, area = resize(frame, (32, 40)), resize(frame, (32, 40), "area")
    np.testing.assert_array_equal(linear, cv2.resize(frame, (40, 32), interpolation=cv2.INTER_LINEAR))
    np.testing.assert_array_equal(area, cv2.resize(frame, (40, 32), interpolation=cv2.INTER_AREA))
    assert np.abs(linear.astype(int) - area).mean() > 10    # a 4x shrink: the filters differ
    with pytest.raises(MSPNError, match="interpolation must be linear or area, got 'cubic'"):
        resize(frame, (32, 40), "cubic")


def test_kth_gray_one_channel(tmp_path, kth_src):
    info = convert_kth(kth_src, tmp_path / "out", size=(24, 32), gray_to_rgb=False, val_persons=())
    assert info["channel_order"] == "gray" and info["videos"] == {"train": 2, "val": 0, "test": 1}
    video = np.load(tmp_path / "out" / "train" / "person15_walking_d2.npy")
    assert video.shape == (6, 1, 24, 32)


def test_kth_errors(tmp_path, kth_src):
    with pytest.raises(MSPNError, match="KTH source folder not found"):
        convert_kth(tmp_path / "nope", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MSPNError, match=r"no KTH videos \(personNN_action_dN_uncomp\.avi\) under"):
        convert_kth(tmp_path / "empty", tmp_path / "out")
    (kth_src / "boxing" / "person02_boxing_d1_uncomp.avi").write_bytes(b"\x00garbage" * 100)
    with pytest.raises(MSPNError, match=r"person02_boxing_d1_uncomp\.avi: (OpenCV cannot open|no frames)"):
        convert_kth(kth_src, tmp_path / "out2", size=(24, 32))
    with pytest.raises(MSPNError, match="person.* 17 listed for both val and test"):
        convert_kth(kth_src, tmp_path / "out3", val_persons=(17,))


# --- Moving MNIST ------------------------------------------------------------------------------

def test_mmnist_sequences_split_by_index(tmp_path):
    seqs = np.random.default_rng(0).integers(0, 256, (6, 10, 16, 16), dtype=np.uint8)  # (T, N, H, W)
    np.save(tmp_path / "mnist_test_seq.npy", seqs)
    info = convert_mmnist(tmp_path / "mnist_test_seq.npy", tmp_path / "out", test=3, val=2)
    assert info["videos"] == {"train": 5, "val": 2, "test": 3}
    for split, indices in (("train", range(0, 5)), ("val", range(5, 7)), ("test", range(7, 10))):
        for i in indices:
            video = np.load(tmp_path / "out" / split / f"{i:05d}.npy")
            np.testing.assert_array_equal(video, seqs[:, i, None])
    resized = convert_mmnist(tmp_path / "mnist_test_seq.npy", tmp_path / "small", test=3, val=2, size=(8, 8))
    assert resized["size"] == [8, 8]
    assert np.load(tmp_path / "small" / "val" / "00005.npy").shape == (6, 1, 8, 8)


def test_mmnist_errors(tmp_path):
    np.save(tmp_path / "float.npy", np.zeros((4, 5, 8, 8), np.float32))
    np.save(tmp_path / "few.npy", np.zeros((4, 5, 8, 8), np.uint8))
    with pytest.raises(MSPNError, match=r"expected Moving MNIST sequences .*got \(4, 5, 8, 8\) float32"):
        convert_mmnist(tmp_path / "float.npy", tmp_path / "out")
    with pytest.raises(MSPNError, match=r"has 5 sequences: test=3 \+ val=2 leaves none for train"):
        convert_mmnist(tmp_path / "few.npy", tmp_path / "out", test=3, val=2)
    with pytest.raises(MSPNError, match="Moving MNIST file not found"):
        convert_mmnist(tmp_path / "missing.npy", tmp_path / "out")


def _idx_bytes(images):
    n, rows, cols = images.shape
    return struct.pack(">iiii", 2051, n, rows, cols) + images.tobytes()


@pytest.fixture
def digits(tmp_path):
    rng = np.random.default_rng(1)
    images = np.zeros((20, 10, 10), np.uint8)
    images[:, 2:8, 3:7] = rng.integers(100, 256, (20, 6, 4))
    (tmp_path / "train-images-idx3-ubyte").write_bytes(_idx_bytes(images))
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(images)))
    return images


def test_idx_parser_plain_and_gz(tmp_path, digits):
    np.testing.assert_array_equal(read_idx_images(tmp_path / "train-images-idx3-ubyte"), digits)
    np.testing.assert_array_equal(read_idx_images(tmp_path / "train-images-idx3-ubyte.gz"), digits)
    (tmp_path / "labels").write_bytes(struct.pack(">ii", 2049, 3) + bytes(3) + bytes(8))
    with pytest.raises(MSPNError, match="not an idx image file .magic 2049, expected 2051"):
        read_idx_images(tmp_path / "labels")
    (tmp_path / "cut").write_bytes(_idx_bytes(digits)[:-5])
    with pytest.raises(MSPNError, match=r"says 20 images of 10x10 \(2000 bytes\) but 1995 bytes follow"):
        read_idx_images(tmp_path / "cut")


# --- Caltech Pedestrian ------------------------------------------------------------------------

def _seq_bytes(jpegs, width, height, image_format=102, pad=0, magic=0xFEED):
    """A Norpix .seq file: 1024-byte header, then per frame uint32 size (counting itself), the
    JPEG bytes and an 8-byte timestamp (then ``pad`` zero bytes, as sector-aligned writers do)."""
    header = bytearray(1024)
    struct.pack_into("<I", header, 0, magic)
    header[4:24] = "Norpix seq".encode("utf-16-le")
    struct.pack_into("<ii", header, 28, 3, 1024)                      # version, header size
    header[36:44] = "test".encode("utf-16-le")                        # description (512 bytes)
    assert len(header) == 1024
    struct.pack_into("<9I", header, 548, width, height, 24, 24, width * height * 3, image_format,
                     len(jpegs), 0, width * height * 3)
    struct.pack_into("<d", header, 584, 30.0)                         # frame rate
    body = bytearray()
    for i, jpeg in enumerate(jpegs):
        body += struct.pack("<I", len(jpeg) + 4) + jpeg + struct.pack("<IHH", 1000 + i, i, 0) + bytes(pad)
    return bytes(header) + bytes(body)


def _jpegs(count, h=48, w=64, shift=0):
    quality = [cv2.IMWRITE_JPEG_QUALITY, 95]
    return [cv2.imencode(".jpg", _moving_bar(t + shift, h, w, colour=True), quality)[1].tobytes()
            for t in range(count)]


@pytest.fixture
def caltech_src(tmp_path):
    src = tmp_path / "caltech"
    for set_no, name, pad in ((0, "V000", 0), (5, "V000", 0), (6, "V001", 12), (11, "V000", 0)):
        (src / f"set{set_no:02d}").mkdir(parents=True)
        seq = _seq_bytes(_jpegs(4, shift=set_no), 64, 48, pad=pad)
        (src / f"set{set_no:02d}" / f"{name}.seq").write_bytes(seq)
    return src


def test_read_seq_frames(caltech_src):
    frames = read_seq(caltech_src / "set06" / "V001.seq")  # padded frames: found by resync
    assert len(frames) == 4 and frames[0].shape == (48, 64, 3)
    assert np.abs(frames[1].astype(int) - _moving_bar(7, 48, 64, colour=True)).mean() < 3


def test_caltech_split_by_set(tmp_path, caltech_src):
    out = tmp_path / "out"
    info = convert_caltech(caltech_src, out, size=(24, 32))
    assert [p.name for p in (out / "train").iterdir()] == ["set00_V000.npy"]
    assert [p.name for p in (out / "val").iterdir()] == ["set05_V000.npy"]
    assert [p.name for p in (out / "test").iterdir()] == ["set06_V001.npy"]
    assert info["skipped"] == ["set11/V000.seq"] and info["channel_order"] == "bgr"
    video = np.load(out / "test" / "set06_V001.npy")
    assert video.shape == (4, 3, 24, 32)
    expected = cv2.resize(_moving_bar(6 + 2, 48, 64, colour=True), (32, 24))
    assert np.abs(video[2].transpose(1, 2, 0).astype(int) - expected).mean() < 3
    area = convert_caltech(caltech_src, tmp_path / "area", size=(24, 32), interpolation="area")
    assert info["resize"] == "cv2.INTER_LINEAR" and area["resize"] == "cv2.INTER_AREA"


def test_caltech_errors(tmp_path, caltech_src):
    (tmp_path / "empty").mkdir()
    with pytest.raises(MSPNError, match=r"no Caltech \.seq files in setNN folders"):
        convert_caltech(tmp_path / "empty", tmp_path / "out")
    bad = tmp_path / "bad.seq"
    bad.write_bytes(_seq_bytes(_jpegs(2), 64, 48, magic=0xBEEF))
    with pytest.raises(MSPNError, match=r"bad\.seq: not a Norpix \.seq file \(magic 0xBEEF, expected 0xFEED"):
        read_seq(bad)
    bad.write_bytes(_seq_bytes(_jpegs(2), 64, 48, image_format=7))
    with pytest.raises(MSPNError, match="unsupported .seq image format 7"):
        read_seq(bad)
    full = _seq_bytes(_jpegs(3), 64, 48)
    bad.write_bytes(full[:-(len(_jpegs(3)[2]) + 20)])
    with pytest.raises(MSPNError, match=r"ends after 2 of its 3 frames \(truncated\?\)"):
        read_seq(bad)
    bad.write_bytes(full[:500])
    with pytest.raises(MSPNError, match="too short for a Norpix .seq header"):
        read_seq(bad)


# --- KITTI raw ---------------------------------------------------------------------------------

ROAD = ("2011_09_26_drive_0015", "2011_09_26_drive_0027", "2011_09_26_drive_0028")


def _kitti_frame(t, h=40, w=1242):
    """A KITTI-wide frame: white outside the authors' columns 184..1208, a moving bar inside."""
    frame = np.full((h, w, 3), 255, np.uint8)
    frame[:, 184:1208] = cv2.resize(_moving_bar(t, h, 80), (1024, h), interpolation=cv2.INTER_NEAREST)
    return frame


@pytest.fixture
def kitti_src(tmp_path):
    src = tmp_path / "kitti"
    for drive in ROAD + ("2011_09_26_drive_0001",):          # 0001 is a 'city' drive
        folder = src / "2011_09_26" / f"{drive}_sync" / "image_02" / "data"
        folder.mkdir(parents=True)
        for t in range(3):
            cv2.imwrite(str(folder / f"{t:010d}.png"), _kitti_frame(t))
    return src


def test_kitti_road_drives_cropped_as_the_authors(tmp_path, kitti_src):
    out = tmp_path / "out"
    info = convert_kitti(kitti_src, out, size=(16, 32))
    assert info["category"] == "road" and info["split"]["rule"] == "last drives by name"
    assert info["videos"] == {"train": 1, "val": 1, "test": 1}      # the city drive is left out
    assert (out / "test" / f"{ROAD[2]}.npy").is_file() and (out / "val" / f"{ROAD[1]}.npy").is_file()
    video = np.load(out / "train" / f"{ROAD[0]}.npy")
    assert video.shape == (3, 3, 16, 32)
    expected = cv2.resize(_kitti_frame(1)[:, 184:1208], (32, 16))   # columns 184..1208, bilinear
    np.testing.assert_array_equal(video[1].transpose(1, 2, 0), expected)  # PNG is lossless
    assert info["resize"] == "columns 184..1208, squeezed, cv2.INTER_LINEAR"


def test_kitti_centre_crop_of_every_drive_as_an_option(tmp_path, kitti_src):
    info = convert_kitti(kitti_src, tmp_path / "out", size=(16, 32), category="all", crop="centre",
                         interpolation="area")
    assert sum(info["videos"].values()) == 4
    video = np.load(tmp_path / "out" / "train" / "2011_09_26_drive_0001.npy")
    frame = _kitti_frame(1)
    centre = frame[:, (1242 - 80) // 2:(1242 - 80) // 2 + 80]       # the 2:1 window of a 40-row frame
    expected = cv2.resize(centre, (32, 16), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(video[1].transpose(1, 2, 0), expected)


def test_kitti_given_drives_and_errors(tmp_path, kitti_src):
    info = convert_kitti(kitti_src, tmp_path / "out", size=(16, 32), test_drives=[f"{ROAD[0]}_sync"])
    assert info["videos"] == {"train": 2, "val": 0, "test": 1}
    with pytest.raises(MSPNError, match="KITTI drive.* not found under .*: 2011_09_26_drive_0077"):
        convert_kitti(kitti_src, tmp_path / "o2", test_drives=["2011_09_26_drive_0077"])
    with pytest.raises(MSPNError, match="no KITTI drives .* in the 'road' category"):
        convert_kitti(kitti_src, tmp_path / "o3", camera="image_03")
    narrow = tmp_path / "narrow" / "2011_09_26" / f"{ROAD[0]}_sync" / "image_02" / "data"
    narrow.mkdir(parents=True)
    cv2.imwrite(str(narrow / "0000000000.png"), _kitti_frame(0)[:, :1200])
    with pytest.raises(MSPNError, match=r"1200 pixels wide, the reference crop needs columns 184\.\.1208"):
        convert_kitti(tmp_path / "narrow", tmp_path / "o4", test_drives=[ROAD[0]])
    with pytest.raises(MSPNError, match="KITTI crop must be reference or centre, got 'middle'"):
        convert_kitti(kitti_src, tmp_path / "o5", crop="middle")


# --- Human3.6M -----------------------------------------------------------------------------------

def _h36m_frame(t, side=900):
    frame = np.full((side, side, 3), 20, np.uint8)
    frame[120:880, 120 + 40 * t:200 + 40 * t] = (40, 180, 240)   # a bar moving inside the crop
    frame[:120] = frame[880:] = 255                              # outside the crop: white
    return frame


@pytest.fixture
def h36m_src(tmp_path):
    src = tmp_path / "h36m"
    for subject, action in ((1, "Directions 1"), (8, "Walking"), (9, "Eating 2"), (2, "Posing")):
        folder = src / f"S{subject}" / "Videos"
        folder.mkdir(parents=True)
        for name in (f"{action}.54138969.mp4", "_ALL.54138969.mp4"):
            writer = cv2.VideoWriter(str(folder / name), cv2.VideoWriter_fourcc(*"mp4v"), 50, (900, 900))
            for t in range(4):
                writer.write(_h36m_frame(t))
            writer.release()
    return src


def test_h36m_crop_resize_and_split_by_subject(tmp_path, h36m_src):
    out = tmp_path / "out"
    info = convert_h36m(h36m_src, out, size=(32, 32))
    assert [p.name for p in (out / "train").iterdir()] == ["S1_Directions_1_54138969.npy"]
    assert [p.name for p in (out / "val").iterdir()] == ["S8_Walking_54138969.npy"]
    assert [p.name for p in (out / "test").iterdir()] == ["S9_Eating_2_54138969.npy"]
    assert info["skipped"] == ["S2/Videos/Posing.54138969.mp4"]     # S2 is in no split; _ALL never read
    assert info["split"]["train"] == [1, 5, 6, 7] and info["split"]["test"] == [9, 11]
    video = np.load(out / "train" / "S1_Directions_1_54138969.npy")
    assert video.shape == (4, 3, 32, 32) and video.dtype == np.uint8
    expected = cv2.resize(_h36m_frame(2)[120:880, 120:880], (32, 32))
    assert np.abs(video[2].transpose(1, 2, 0).astype(int) - expected).mean() < 4   # mp4v is lossy
    assert video.max() < 250                                    # no white margin: it was cropped away


def test_h36m_errors(tmp_path, h36m_src):
    (tmp_path / "empty").mkdir()
    with pytest.raises(MSPNError, match=r"no Human3\.6M videos \(S<n>/Videos/<Action>\.<camera>\.mp4\)"):
        convert_h36m(tmp_path / "empty", tmp_path / "out")
    small = tmp_path / "small" / "S1" / "Videos"
    small.mkdir(parents=True)
    writer = cv2.VideoWriter(str(small / "Sitting.55011271.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 50, (640, 480))
    writer.write(np.zeros((480, 640, 3), np.uint8))
    writer.release()
    with pytest.raises(MSPNError, match=r"480x640 frames are too small for the \[120:880, 120:880\] crop"):
        convert_h36m(tmp_path / "small", tmp_path / "out")
    with pytest.raises(MSPNError, match="subject.* 9 listed for both val and test"):
        convert_h36m(h36m_src, tmp_path / "out", val_subjects=(9,))


# --- the command line --------------------------------------------------------------------------

@pytest.mark.parametrize("argv, message", [
    (["kth", "--src", "{tmp}/none"], "KTH source folder not found"),
    (["caltech", "--src", "{tmp}/none"], "Caltech Pedestrian source folder not found"),
    (["kitti", "--src", "{tmp}/none"], "KITTI source folder not found"),
    (["h36m", "--src", "{tmp}/none"], "Human3.6M source folder not found"),
    (["mmnist", "--src", "{tmp}/none.npy"], "Moving MNIST file not found"),
])
def test_cli_errors_exit_1(tmp_path, capsys, argv, message):
    argv = ["data"] + [a.format(tmp=tmp_path) for a in argv] + ["--out", str(tmp_path / "out")]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"mspn data: error: {message}") and err.count("\n") == 1


def test_cli_converts(tmp_path, capsys, kitti_src, digits):
    assert main(["data", "kitti", "--src", str(kitti_src), "--out", str(tmp_path / "k"), "--size", "16x32",
                 "--val-drives", ROAD[0], "--test-drives", ROAD[1]]) == 0
    assert "wrote 1 train, 1 val, 1 test videos of 3x16x32" in capsys.readouterr().out
    assert main(["data", "kitti", "--src", str(kitti_src), "--out", str(tmp_path / "k2"), "--size", "16x32",
                 "--category", "all", "--crop", "centre", "--interpolation", "area"]) == 0
    assert "wrote 2 train, 1 val, 1 test videos" in capsys.readouterr().out
    assert _info(tmp_path / "k2")["resize"] == "centre crop to the target aspect, cv2.INTER_AREA"
    assert main(["data", "mmnist-generate", "--out", str(tmp_path / "m"), "--videos", "2,1,1",
                 "--frames", "4", "--size", "32"]) == 0
    assert "wrote 2 train, 1 val, 1 test videos of 1x32x32" in capsys.readouterr().out
