"""The frame discriminator and the import of the reference's discriminator."""
from pathlib import Path

import pytest
import torch

from mspn.config import load_config
from mspn.errors import MSPNError
from mspn.models.discriminator import FrameDiscriminator, disc_kernel, map_reference_discriminator_state

# A copy of ../shared/reference/keys-discriminator.txt, kept in the repository so the test always runs.
KEYS = Path(__file__).resolve().parent / "reference_keys" / "keys-discriminator.txt"
PAPER = (64, 64, 128, 256, 256, 512)


def reference_state(seed=0) -> dict:
    """Random tensors in the reference layout (shapes from the reference key listing)."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for line in KEYS.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        key, shape = line.split("\t")
        dims = tuple(int(d) for d in shape.strip("()").split(",") if d.strip())
        state[key] = (torch.tensor(3) if key.endswith("num_batches_tracked")
                      else torch.rand(dims, generator=gen))
    return state


@pytest.mark.parametrize("size, kernel", [((128, 128), (4, 4)), ((96, 128), (3, 4)), ((64, 64), (2, 2))])
def test_final_kernel_follows_the_frame_size(size, kernel):
    assert disc_kernel(size, PAPER) == kernel


def test_scores_one_value_per_frame_at_any_usable_size():
    torch.manual_seed(0)
    for size in [(16, 16), (24, 32)]:
        disc = FrameDiscriminator((4, 8, 8), 3, size)
        assert disc(torch.rand(5, 3, *size)).shape == (5, 1)


def test_standardisation_makes_the_scores_invariant_to_brightness_and_contrast():
    torch.manual_seed(0)
    disc = FrameDiscriminator((4, 8), 1, (16, 16))
    x = torch.rand(4, 1, 16, 16)
    torch.testing.assert_close(disc(x), disc(3.0 * x + 0.25), rtol=1e-4, atol=1e-5)


def test_a_frame_too_small_to_pool_is_a_one_line_error():
    with pytest.raises(MSPNError, match=r"pools 5 times, which a 16x16 .* cannot take"):
        FrameDiscriminator(PAPER, 1, (16, 16))


def test_reference_state_maps_onto_ours_tensor_for_tensor():
    state = reference_state()
    config = load_config("paper-rgb", ["data.size=[128,128]"])
    mapped = map_reference_discriminator_state(state, config)
    disc = FrameDiscriminator(PAPER, 3, (128, 128))
    disc.load_state_dict(mapped, strict=True)
    assert torch.equal(disc.stem.weight, state["layer1.weight"])
    assert torch.equal(disc.blocks[2].conv2.weight, state["conv.4.bottleneck.3.weight"])
    assert torch.equal(disc.blocks[4].proj_bn.running_var, state["conv.8.res.1.running_var"])
    assert torch.equal(disc.head.weight, state["full_conv.weight"])
    assert torch.equal(disc.fc2.bias, state["linear.2.bias"])
    # DataParallel prefixes are accepted
    prefixed = {f"module.{k}": v for k, v in state.items()}
    assert map_reference_discriminator_state(prefixed, config).keys() == mapped.keys()


def test_reference_made_for_another_size_or_layout_is_refused():
    config = load_config("paper-rgb")      # 96x128 frames: final kernel 3x4, the reference's is 4x4
    with pytest.raises(MSPNError, match=r"does not fit .* 96x128 frames .*shape mismatch: head.weight"):
        map_reference_discriminator_state(reference_state(), config)
    state = reference_state()
    state["conv.1.weird.weight"] = torch.zeros(1)
    with pytest.raises(MSPNError, match="unexpected keys: conv.1.weird.weight"):
        map_reference_discriminator_state(state)
