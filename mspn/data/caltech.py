"""Caltech Pedestrian: Norpix ``.seq`` files in ``setNN/`` folders -> train/val/test .npy videos.

Split by set: set00-set05 train and set06-set10 test; val is carved from train by set (default
set05). One .seq file becomes one video, every frame resized bilinearly (INTER_LINEAR, the authors'
cv2.resize default; area with interpolation="area") to 160 wide x 128 high
(the 640x480 frames are squeezed to the paper's 5:4, as is usual for this benchmark), BGR.

The Norpix sequence format (StreamPix): a header of ``header_size`` bytes (1024), all little-endian:
  0 uint32 magic 0xFEED; 4 name 'Norpix seq' in UTF-16-LE (24 bytes); 28 int32 version;
  32 int32 header_size; 36 description (512 bytes); 548 uint32 width, height, bit depth,
  bit depth real, image size bytes, image format, allocated frames, origin, true image size;
  584 float64 frame rate.
Compressed formats (102 / 201 JPEG, 1 / 2 PNG) store each frame as a uint32 size that counts
itself, the image bytes, then an 8-byte timestamp. Raw formats (100 / 200) store fixed-size frames
every ``true image size`` bytes.
"""
from __future__ import annotations

import re
import struct
from pathlib import Path

import cv2
import numpy as np

from mspn.data.frames import (
    assign_split,
    check_disjoint,
    check_interpolation,
    check_size,
    require_dir,
    resize,
    resize_note,
    to_chw,
)
from mspn.data.video import DatasetWriter
from mspn.errors import MSPNError
from mspn.progress import tqdm

SEQ_MAGIC = 0xFEED
SEQ_NAME = "Norpix seq"
COMPRESSED_FORMATS = {102: "jpeg", 201: "jpeg", 1: "png", 2: "png"}
RAW_FORMATS = {100: "raw", 200: "raw"}
_TIMESTAMP_BYTES = 8
_IMAGE_MAGICS = (b"\xff\xd8", b"\x89P")  # JPEG start-of-image, PNG signature
SET_NAME = re.compile(r"^set(\d+)$", re.IGNORECASE)


def read_seq_header(data: bytes, path) -> dict:
    """Parse the header fields of a Norpix .seq file held in ``data``."""
    if len(data) < 1024:
        raise MSPNError(f"{path}: too short for a Norpix .seq header ({len(data)} bytes)")
    magic = struct.unpack_from("<I", data, 0)[0]
    if magic != SEQ_MAGIC:
        raise MSPNError(f"{path}: not a Norpix .seq file (magic 0x{magic:X}, expected 0xFEED)")
    name = data[4:24].decode("utf-16-le", errors="replace")
    if name != SEQ_NAME:
        raise MSPNError(f"{path}: corrupt .seq header (name {name!r}, expected {SEQ_NAME!r})")
    version, header_size = struct.unpack_from("<ii", data, 28)
    (width, height, bit_depth, bit_depth_real, image_size, image_format, frames, _origin,
     true_size) = struct.unpack_from("<9I", data, 548)
    fps = struct.unpack_from("<d", data, 584)[0]
    if header_size < 1024 or header_size > len(data) or not (0 < width <= 16384 and 0 < height <= 16384):
        raise MSPNError(f"{path}: corrupt .seq header (header size {header_size}, frame {width}x{height})")
    if image_format not in COMPRESSED_FORMATS and image_format not in RAW_FORMATS:
        raise MSPNError(f"{path}: unsupported .seq image format {image_format} (supported: "
                        f"{sorted(COMPRESSED_FORMATS) + sorted(RAW_FORMATS)})")
    return {"version": version, "header_size": header_size, "width": width, "height": height,
            "bit_depth": bit_depth, "bit_depth_real": bit_depth_real, "image_size": image_size,
            "image_format": image_format, "frames": frames, "true_size": true_size, "fps": fps}


def _compressed_frames(data: bytes, header: dict, path):
    pos, index = header["header_size"], 0
    while index < header["frames"]:
        if pos + 4 > len(data):
            break
        size = struct.unpack_from("<I", data, pos)[0]
        image = data[pos + 4:pos + size]
        if size <= 4 or pos + size > len(data) or image[:2] not in _IMAGE_MAGICS:
            raise MSPNError(f"{path}: frame {index} at byte {pos} is not a JPEG/PNG image "
                            f"(size field {size}; corrupt file?)")
        yield index, image
        index += 1
        pos += size + _TIMESTAMP_BYTES
        # some writers pad frames to a sector boundary: look a little ahead for the next frame
        if index < header["frames"] and pos + 6 <= len(data) and data[pos + 4:pos + 6] not in _IMAGE_MAGICS:
            for skip in range(1, 1024):
                at = pos + skip
                if at + 6 > len(data):
                    break
                if data[at + 4:at + 6] in _IMAGE_MAGICS:
                    pos = at
                    break
    if index < header["frames"]:
        raise MSPNError(f"{path}: ends after {index} of its {header['frames']} frames (truncated?)")


def read_seq(path: str | Path) -> list[np.ndarray]:
    """Every frame of a .seq file as (H, W, 3) uint8 BGR arrays (gray raw frames are expanded)."""
    path = Path(path)
    data = path.read_bytes()
    header = read_seq_header(data, path)
    frames = []
    if header["image_format"] in COMPRESSED_FORMATS:
        for index, image in _compressed_frames(data, header, path):
            frame = cv2.imdecode(np.frombuffer(image, np.uint8), cv2.IMREAD_COLOR)
            if frame is None:
                raise MSPNError(f"{path}: frame {index} cannot be decoded")
            frames.append(frame)
    else:
        channels = header["bit_depth_real"] // 8
        if header["bit_depth_real"] % 8 or channels not in (1, 3):
            raise MSPNError(f"{path}: raw frames of {header['bit_depth_real']} bits are not supported")
        need = header["height"] * header["width"] * channels
        step = max(header["true_size"], need)
        for index in range(header["frames"]):
            start = header["header_size"] + index * step
            if start + need > len(data):
                raise MSPNError(f"{path}: ends after {index} of its {header['frames']} frames (truncated?)")
            frame = np.frombuffer(data, np.uint8, need, start)
            frame = frame.reshape(header["height"], header["width"], channels)
            frames.append(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR) if channels == 1 else frame.copy())
    if not frames:
        raise MSPNError(f"{path}: holds no frames")
    return frames


def _set_number(path: Path, root: Path) -> int | None:
    for parent in path.relative_to(root).parents:
        match = SET_NAME.match(parent.name)
        if match:
            return int(match.group(1))
    return None


def convert_caltech(src: str | Path, out: str | Path, size: tuple[int, int] = (128, 160),
                    train_sets=range(0, 6), val_sets=(5,), test_sets=range(6, 11),
                    interpolation: str = "linear", overwrite: bool = False) -> dict:
    """Convert ``src/setNN/*.seq``; returns the info.json dict. Videos (T, 3, H, W) uint8 BGR.
    Sets in none of the lists are skipped; a set in val_sets leaves train."""
    src = require_dir(src, "Caltech Pedestrian source")
    size = check_size(size)
    check_interpolation(interpolation)
    check_disjoint(test_sets, val_sets, "set(s)")
    files = [(s, p) for p in sorted(src.rglob("*.seq")) if (s := _set_number(p, src)) is not None]
    if not files:
        raise MSPNError(f"no Caltech .seq files in setNN folders under {src}")
    writer = DatasetWriter(out, overwrite=overwrite)
    skipped = []
    for set_no, path in tqdm(files, desc="Caltech", unit="video"):
        split = assign_split(set_no, test_sets, val_sets, train_sets)
        if split is None:
            skipped.append(f"set{set_no:02d}/{path.name}")
            continue
        frames = [resize(f, size, interpolation) for f in read_seq(path)]
        writer.write(split, f"set{set_no:02d}_{path.stem}", to_chw(frames, 3, str(path)))
    return writer.finish(
        dataset="caltech-pedestrian", source=str(src), channel_order="bgr", resize=resize_note(interpolation),
        split={"by": "set", "train": sorted(set(train_sets) - set(val_sets) - set(test_sets)),
               "val": sorted(val_sets), "test": sorted(test_sets)},
        skipped=skipped)
