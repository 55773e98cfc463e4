import pytest
import torch
from torch.nn import functional as F

from mspn.config import ConfigError, ModelConfig, load_config
from mspn.models.cell import EDLSTMCell
from mspn.models.mspn import MSPN, downsample_nearest


@pytest.fixture(scope="module")
def micro():
    torch.manual_seed(0)
    return MSPN(load_config("micro").model).eval()


def test_paper_configs_have_the_reference_parameter_counts():
    # Reference totals minus its unused tensors (scale + last merge conv per cell).
    for name, reference_total in [("paper-mnist", 26_952_422), ("paper-rgb", 111_135_312)]:
        config = load_config(name).model
        unused = config.levels * (1 + 64 * 128 * 9 + 64)
        model = MSPN(config)
        assert sum(p.numel() for p in model.parameters()) == reference_total - unused


def test_no_unused_parameters(micro):
    frames = torch.rand(2, 4, 1, 16, 16)
    micro.zero_grad()
    micro.rollout(frames[:, :3], 2).sum().backward()
    unused = [n for n, p in micro.named_parameters() if p.grad is None]
    assert unused == []


def test_rollout_is_the_step_function_looped(micro):
    frames = torch.rand(2, 3, 1, 16, 16)
    with torch.no_grad():
        future = micro.rollout(frames, 3)
        state = micro.init_state(2, 16, 16, frames)
        for t in range(3):
            _, state = micro.step(frames[:, t], state)
        expected = []
        for _ in range(3):
            preds, state = micro.step(None, state, closed_loop=True)
            expected.append(preds[0])
            assert state.errors[0].abs().max() == 0  # closed loop: level-0 error is exactly zero
    assert torch.equal(future, torch.stack(expected, 1))
    assert future.shape == (2, 3, 1, 16, 16)


def test_step_returns_a_prediction_per_level(micro):
    state = micro.init_state(1, 16, 16, torch.zeros(()))
    preds, _ = micro.step(torch.rand(1, 1, 16, 16), state)
    assert [tuple(p.shape) for p in preds] == [(1, 1, 16, 16), (1, 1, 8, 8)]


def test_predictions_are_not_clamped():
    torch.manual_seed(0)
    model = MSPN(load_config("micro").model).eval()
    with torch.no_grad():
        model.levels[0].predict.bias.fill_(5.0)
        out = model.rollout(torch.rand(1, 2, 1, 16, 16), 1)
    assert out.max() > 1.0


def test_downsample_nearest_equals_torch_nearest_interpolation():
    x = torch.rand(2, 3, 16, 24)
    for f in (1, 2, 4):
        assert torch.equal(downsample_nearest(x, f), F.interpolate(x, scale_factor=1 / f, mode="nearest"))


def test_cell_is_a_pure_function():
    cell = EDLSTMCell(3, 4, (4, 8), 0, 1)
    x = torch.rand(1, 3, 8, 8)
    state = cell.init_state(1, 8, 8, x)
    a = cell(x, state, None)
    b = cell(x, state, None)
    assert torch.equal(a[0], b[0]) and torch.equal(state.h, torch.zeros_like(state.h))


@pytest.mark.parametrize("size", [(18, 16), (16, 6), (0, 16)])
def test_sizes_the_hierarchy_cannot_take_are_refused(micro, size):
    with pytest.raises(ConfigError, match=r"not usable: .* multiples of 4"):
        micro.rollout(torch.rand(1, 2, 1, *size), 1)


def test_wrong_channel_count_is_refused(micro):
    with pytest.raises(ValueError, match=r"context must be \(B, T, 1, H, W\)"):
        micro.rollout(torch.rand(1, 2, 3, 16, 16), 1)


def test_impossible_model_configs_are_refused():
    with pytest.raises(ConfigError, match="at least levels \\+ 1"):
        MSPN(ModelConfig(channels=(4, 8), levels=2))
    with pytest.raises(ConfigError, match="levels must be >= 2"):
        MSPN(ModelConfig(channels=(4, 8), levels=1))
