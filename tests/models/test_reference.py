import re
from pathlib import Path

import pytest
import torch

from mspn.checkpoint import load_checkpoint
from mspn.config import ModelConfig, load_config
from mspn.errors import MSPNError
from mspn.models.mspn import MSPN
from mspn.models.reference import import_reference_file, map_reference_state, reference_generator_state
from tests.models.reference_impl import MSPNet

# Copies of ../shared/reference/keys-*.txt (the authors' state_dict layouts), kept in the
# repository so these tests never skip on a checkout without ../shared.
REFERENCE = Path(__file__).resolve().parent / "reference_keys"


def reference_layout(name: str) -> dict[str, torch.Size]:
    """{key: shape} read from ../shared/reference/keys-<name>.txt."""
    path = REFERENCE / f"keys-{name}.txt"
    layout = {}
    for line in path.read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        key, shape = line.split("\t")
        layout[key] = torch.Size(int(d) for d in re.findall(r"\d+", shape))
    return layout


@pytest.mark.parametrize("name", ["paper-mnist", "paper-rgb"])
def test_every_reference_key_maps_and_every_parameter_is_filled(name):
    layout = reference_layout(name)
    state = {k: torch.randn(s) if len(s) else torch.zeros(s) for k, s in layout.items()}
    config = load_config(name).model
    mapped = map_reference_state(state, config)
    ours = MSPN(config).state_dict()
    assert set(mapped) == set(ours)
    for key, value in mapped.items():
        assert value.shape == ours[key].shape, key
    # Exactly the two unused tensors per cell are dropped.
    dropped = sum(v.numel() for v in state.values()) - sum(v.numel() for v in mapped.values())
    per_cell_unused = 1 + 2 * config.channels[0] * config.channels[0] * 9 + config.channels[0]
    assert dropped == config.levels * per_cell_unused


@pytest.mark.parametrize("name", ["paper-mnist", "paper-rgb"])
def test_reference_impl_matches_the_shared_layout(name):
    """The test's reference re-implementation has exactly the authors' keys and shapes."""
    layout = reference_layout(name)
    m = load_config(name).model
    ref = MSPNet(m.channels, m.levels, m.frame_channels, m.hidden)
    assert {k: v.shape for k, v in ref.state_dict().items()} == layout


@pytest.mark.parametrize("levels,channels", [(3, (8, 8, 16, 16)), (4, (4, 8, 8, 16, 16))])
def test_imported_weights_predict_like_the_reference(levels, channels):
    torch.manual_seed(0)
    config = ModelConfig(channels=channels, levels=levels, hidden=6, frame_channels=3)
    ref = MSPNet(channels, levels, 3, 6).eval()
    for p in ref.parameters():  # bigger than default init so errors would show
        p.data.mul_(1.5)
    ours = MSPN(config).eval()
    ours.load_state_dict(map_reference_state(ref.state_dict(), config))
    frames = torch.rand(2, 7, 3, 32, 32)
    with torch.no_grad():
        expected = ref(frames, pred_steps=3)[:, -3:]
        got = ours.rollout(frames[:, :4], horizon=3)
    assert expected.abs().max() > 1e-3
    assert (got - expected).abs().max().item() <= 1e-5


def test_unexpected_and_missing_keys_are_listed():
    config = ModelConfig(channels=(4, 8, 8), levels=2, hidden=4, frame_channels=1)
    state = MSPNet(config.channels, 2, 1, 4).state_dict()
    state["EHcell.bogus.weight"] = torch.zeros(1)
    del state["ELcell.out_conv.0.bias"]
    with pytest.raises(MSPNError, match=r"unexpected keys: EHcell\.bogus\.weight.*"
                                        r"missing keys: levels\.1\.predict\.bias"):
        map_reference_state(state, config)


def test_reference_of_another_config_is_refused():
    layout = reference_layout("paper-mnist")
    state = {k: torch.zeros(s) for k, s in layout.items()}
    with pytest.raises(MSPNError, match="does not match this config"):
        map_reference_state(state, load_config("paper-rgb").model)


def test_checkpoint_containers():
    bare = {"a.weight": torch.zeros(1)}
    assert reference_generator_state({"model_state": bare}) is bare
    assert reference_generator_state({"g_model": bare, "d_img_model": {}}) is bare
    assert reference_generator_state(bare) is bare
    with pytest.raises(MSPNError, match="not a reference checkpoint"):
        reference_generator_state({"epoch": 3})


def test_import_reference_cli_writes_a_loadable_checkpoint(tmp_path, capsys):
    from mspn.cli import main
    m = load_config("micro").model
    ref = MSPNet(m.channels, m.levels, m.frame_channels, m.hidden)
    torch.save({"model_state": ref.state_dict(), "epoch": 1}, tmp_path / "ref.pt")
    out = tmp_path / "ours.pt"
    assert main(["import-reference", "--ckpt", str(tmp_path / "ref.pt"), "--config", "micro",
                 "--out", str(out)]) == 0
    ckpt = load_checkpoint(out)
    assert ckpt.config.name == "micro"
    model = ckpt.build_model()
    assert torch.equal(model.levels[0].predict.weight, ref.EHcell.out_conv[0].weight)
    # another config's reference checkpoint: one line, exit 1
    assert main(["import-reference", "--ckpt", str(tmp_path / "ref.pt"), "--config", "tiny",
                 "--out", str(tmp_path / "x.pt")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("mspn import-reference: error: reference checkpoint does not match") and "\n" not in err
    assert not (tmp_path / "x.pt").exists()


def test_vendored_layouts_equal_the_shared_originals():
    shared = Path(__file__).resolve().parents[3] / "shared" / "reference"
    if not shared.is_dir():
        pytest.skip(f"{shared} not present: nothing to compare the copies with")
    for original in shared.glob("keys-*.txt"):
        assert (REFERENCE / original.name).read_text() == original.read_text(), original.name


def test_import_reference_adversarial_checkpoint_converts_both_networks(tmp_path):
    """A reference adversarial checkpoint (g_model + d_img_model) of paper-rgb, discriminator
    made for 128x128 frames as the reference's is: both networks land in our checkpoint."""
    from mspn.models.discriminator import build_discriminator
    from tests.models.test_discriminator import reference_state as reference_discriminator_state

    generator = {k: torch.randn(s) if len(s) else torch.zeros(s)
                 for k, s in reference_layout("paper-rgb").items()}
    discriminator = reference_discriminator_state()
    torch.save({"g_model": generator, "d_img_model": discriminator, "epoch": 60}, tmp_path / "adv.pt")
    import_reference_file(tmp_path / "adv.pt", "paper-rgb", tmp_path / "ours.pt", size=(128, 128))
    ckpt = load_checkpoint(tmp_path / "ours.pt")
    assert ckpt.frame_size == (128, 128)
    model = ckpt.build_model()
    assert torch.equal(model.levels[0].gates.in_conv.weight, generator["EHcell.en_decoder.in_conv.0.weight"])
    ours = build_discriminator(ckpt.config, (128, 128))
    ours.load_state_dict(ckpt.extra["discriminator"])
    assert torch.equal(ours.state_dict()[next(iter(ours.state_dict()))], discriminator["layer1.weight"])
    # The reference's discriminator has a kernel for 128x128 frames: at 96x128 it does not fit.
    with pytest.raises(MSPNError, match="reference discriminator does not fit"):
        import_reference_file(tmp_path / "adv.pt", "paper-rgb", tmp_path / "x.pt")
