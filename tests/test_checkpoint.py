"""mspn.checkpoint: round trip, and damaged or foreign files refused in one line (library and CLI)."""
import zipfile

import pytest
import torch

from mspn.checkpoint import load_checkpoint, save_checkpoint, weights_digest
from mspn.cli import main
from mspn.config import load_config
from mspn.errors import MSPNError
from mspn.models.mspn import MSPN


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    config = load_config("micro")
    model = MSPN(config.model)
    path = tmp_path / "micro.pt"
    save_checkpoint(path, config, model.state_dict())
    return path, model


def _cli_refusal(path, capsys, tmp_path) -> str:
    """`mspn eval` on the file: exit 1 and exactly one line on stderr, no traceback."""
    code = main(["eval", "--ckpt", str(path), "--data", str(tmp_path), "--report", str(tmp_path / "r.json")])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_round_trip_records_the_weights_digest(saved):
    path, model = saved
    raw = torch.load(path, weights_only=True)
    assert raw["model_sha256"] == weights_digest(model.state_dict())
    loaded = load_checkpoint(path)
    assert "model_sha256" not in loaded.extra
    for name, value in model.state_dict().items():
        assert torch.equal(loaded.model[name], value)


def test_truncated_checkpoint_is_refused(saved, capsys, tmp_path):
    path, _ = saved
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(MSPNError, match="not a readable checkpoint"):
        load_checkpoint(path)
    assert "not a readable checkpoint" in _cli_refusal(path, capsys, tmp_path)


def _largest_tensor_offset(path) -> int:
    """File offset of the middle of the largest tensor record inside torch's zip archive."""
    with zipfile.ZipFile(path) as archive:
        info = max((i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    with open(path, "rb") as handle:
        handle.seek(info.header_offset + 26)
        name_len, extra_len = int.from_bytes(handle.read(2), "little"), int.from_bytes(handle.read(2), "little")
    return info.header_offset + 30 + name_len + extra_len + info.file_size // 2


def test_bit_flipped_weights_are_refused(saved, capsys, tmp_path):
    path, _ = saved
    data = bytearray(path.read_bytes())
    data[_largest_tensor_offset(path)] ^= 0x10  # one bit of one weight
    path.write_bytes(bytes(data))
    with pytest.raises(MSPNError, match="weights do not match the SHA-256 recorded when it was saved"):
        load_checkpoint(path)
    _cli_refusal(path, capsys, tmp_path)


def test_other_format_version_is_refused(saved, capsys, tmp_path):
    path, _ = saved
    raw = torch.load(path, weights_only=True)
    torch.save({**raw, "version": 2}, path)
    with pytest.raises(MSPNError, match="checkpoint format version 2 is not supported .this mspn reads version 1."):
        load_checkpoint(path)
    assert "format version 2" in _cli_refusal(path, capsys, tmp_path)


def test_tensors_that_do_not_fit_are_refused(saved, capsys, tmp_path):
    path, model = saved
    raw = torch.load(path, weights_only=True)
    name = next(iter(raw["model"]))
    state = dict(raw["model"], **{name: torch.zeros(3, 3)})
    torch.save({**raw, "model": state, "model_sha256": weights_digest(state)}, path)
    with pytest.raises(MSPNError, match=f"does not fit this model .*{name}"):
        load_checkpoint(path).build_model()
    assert "does not fit this model" in _cli_refusal(path, capsys, tmp_path)
