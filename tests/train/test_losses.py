"""The training schedule (closed loop) and the losses."""
import torch
from torch.nn import functional as F

from mspn.config import load_config
from mspn.models.mspn import MSPN
from mspn.train.losses import ClipUnroller, frames_for_discriminator, lsgan_d_loss, lsgan_g_loss, pixel_loss


def _model_and_clip(seed=0):
    torch.manual_seed(seed)
    config = load_config("micro")
    model = MSPN(config.model).eval()
    clip = torch.rand(2, config.data.clip_length, 1, 16, 16)
    return config, model, clip


def test_closed_loop_steps_match_the_test_time_rollout():
    config, model, clip = _model_and_clip()
    ctx, horizon = config.data.context, config.data.pred_steps
    with torch.no_grad():
        predictions = ClipUnroller(model, horizon)(clip)
        future = model.rollout(clip[:, :ctx], horizon)
    assert len(predictions) == clip.shape[1]
    unrolled = torch.stack([predictions[t][0] for t in range(ctx, ctx + horizon)], dim=1)
    torch.testing.assert_close(unrolled, future, rtol=0, atol=0)


def test_closed_loop_ignores_the_real_future_frames():
    config, model, clip = _model_and_clip()
    other = clip.clone()
    other[:, config.data.context:] = torch.rand_like(other[:, config.data.context:])
    unroller = ClipUnroller(model, config.data.pred_steps)
    with torch.no_grad():
        a, b = unroller(clip), unroller(other)
    for t in range(clip.shape[1]):
        torch.testing.assert_close(a[t][0], b[t][0], rtol=0, atol=0)


def test_pixel_loss_is_the_sum_over_steps_from_one_and_levels():
    config, model, clip = _model_and_clip()
    with torch.no_grad():
        predictions = ClipUnroller(model, config.data.pred_steps)(clip)
    expected = 0.0
    for t in range(1, clip.shape[1]):
        for _level, p in enumerate(predictions[t]):
            target = F.interpolate(clip[:, t], size=p.shape[-2:], mode="nearest")
            expected += float(((p - target) ** 2).sum())
    assert abs(float(pixel_loss(predictions, clip)) - expected) <= 1e-4 * expected
    # t = 0 carries no loss: any prediction there leaves the loss unchanged
    changed = [[p + 7.0 for p in predictions[0]]] + predictions[1:]
    assert float(pixel_loss(changed, clip)) == float(pixel_loss(predictions, clip))
    # a sum, not a mean: doubling the batch doubles the loss
    doubled = [[torch.cat([p, p]) for p in step] for step in predictions]
    torch.testing.assert_close(pixel_loss(doubled, torch.cat([clip, clip])),
                               2 * pixel_loss(predictions, clip))


def test_discriminator_frames_start_at_half_the_context():
    clip = torch.arange(2 * 6, dtype=torch.float32).reshape(2, 6, 1, 1, 1).expand(2, 6, 1, 4, 4)
    predictions = [[clip[:, t] + 100] for t in range(6)]
    real, fake = frames_for_discriminator(predictions, clip, context=4)
    assert real.shape == fake.shape == (2 * 4, 1, 4, 4)
    assert real[:, 0, 0, 0].tolist() == [2, 3, 4, 5, 8, 9, 10, 11]
    assert (fake - real).unique().tolist() == [100]


def test_least_squares_gan_losses():
    real, fake = torch.tensor([[1.0], [0.0]]), torch.tensor([[-1.0], [1.0]])
    assert float(lsgan_d_loss(real, fake)) == (0 + 1) / 2 + (0 + 4) / 2
    assert float(lsgan_g_loss(fake)) == (4 + 0) / 2
