import pytest
import torch
import torch.nn.functional as F

from vj.engine.pixels.models import LimitedPalette, UnlimitedPalette, optimize


def rand(*shape, seed=0):
    """Seeded uniform noise."""
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def picture(width, height):
    """A smooth colourful (1, 3, H, W) picture in [0, 1]."""
    y, x = torch.meshgrid(torch.linspace(0, 1, height), torch.linspace(0, 1, width), indexing="ij")
    return torch.stack([x, y, 0.5 + 0.5 * torch.sin(6 * x * y)]).unsqueeze(0)


def colours(image):
    """The distinct RGB triples of an image as it is shown (uint8)."""
    frame = (image[0] * 255).round().to(torch.uint8).reshape(3, -1).T
    return torch.unique(frame, dim=0)


def dist(a, b):
    """Exact pairwise distances between colour rows."""
    return torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist")


def mse_to(target):
    return lambda image: F.mse_loss(image, target)


def gradient_of(model, loss_fn):
    """What `optimize` calls each step: the gradient of loss_fn(model.decode()) into the model."""
    return lambda: loss_fn(model.decode()).backward()


MODELS = {
    "unlimited": lambda w, h: UnlimitedPalette(w, h, seed=1),
    "limited": lambda w, h: LimitedPalette(w, h, seed=1),
}


@pytest.mark.parametrize("kind", MODELS)
def test_decode_and_frame_shapes_and_ranges(kind):
    model = MODELS[kind](20, 12)
    image, frame = model.decode(), model.frame()
    assert image.shape == frame.shape == (1, 3, 12, 20)
    assert image.requires_grad and not frame.requires_grad
    assert 0 <= image.min() and image.max() <= 1
    assert torch.equal(image.detach(), frame)  # what the losses see is what is shown


def test_unlimited_encode_reproduces_the_picture():
    model = UnlimitedPalette(20, 12)
    image = rand(1, 3, 12, 20, seed=3)
    model.encode(image)
    assert torch.allclose(model.decode(), image, atol=1e-7)
    flat = torch.tensor([0.3, 0.6, 0.9]).view(1, 3, 1, 1).expand(1, 3, 25, 33)
    model.encode(flat)  # another size is resized
    assert torch.allclose(model.frame(), flat[..., :12, :20], atol=1e-5)


def test_limited_encode_takes_the_nearest_palette_colours():
    model = LimitedPalette(24, 16, palette_size=4, palettes=3, random_initial_palette=True, seed=2)
    palette = model.palette().detach()
    image = rand(1, 3, 16, 24, seed=4)
    model.encode(image)
    decoded = model.decode().detach()[0].reshape(3, -1).T
    pixels = image[0].reshape(3, -1).T
    nearest = dist(pixels, palette).min(1).values
    assert torch.allclose((decoded - pixels).norm(dim=1), nearest, atol=1e-6)
    assert dist(decoded, palette).min(1).values.max() < 1e-6


def test_limited_encode_reproduces_a_picture_made_of_palette_colours():
    model = LimitedPalette(16, 10, palette_size=5, palettes=4, random_initial_palette=True, seed=5)
    palette = model.palette().detach()
    index = torch.randint(len(palette), (160,), generator=torch.Generator().manual_seed(6))
    image = palette[index].T.reshape(1, 3, 10, 16)
    model.encode(image)
    assert torch.allclose(model.frame(), image, atol=1e-6)


@pytest.mark.parametrize("kind", MODELS)
def test_optimize_lowers_the_loss(kind):
    model = MODELS[kind](24, 16)
    target = picture(24, 16)
    before = F.mse_loss(model.frame(), target).item()
    optimize(model, gradient_of(model, mse_to(target)), steps=40, learning_rate=0.05)
    after = F.mse_loss(model.frame(), target).item()
    assert after < 0.7 * before


@pytest.mark.parametrize("kind", MODELS)
def test_the_optimizer_can_be_kept_across_frames(kind):
    model = MODELS[kind](24, 16)
    target = picture(24, 16)
    optimizer = optimize(model, gradient_of(model, mse_to(target)), steps=10, learning_rate=0.05)
    first = F.mse_loss(model.frame(), target).item()
    kept = optimize(model, gradient_of(model, mse_to(target)), steps=10, learning_rate=0.03, optimizer=optimizer)
    assert kept is optimizer
    assert optimizer.param_groups[0]["lr"] == 0.03
    steps = {int(optimizer.state[p]["step"]) for p in model.parameters() if p.requires_grad}
    assert steps == {20}
    assert F.mse_loss(model.frame(), target).item() < first
    fresh = optimize(model, gradient_of(model, mse_to(target)), steps=3, learning_rate=0.05)
    assert fresh is not optimizer
    assert {int(fresh.state[p]["step"]) for p in model.parameters() if p.requires_grad} == {3}


@pytest.mark.parametrize(
    "width,height,palette_size,palettes",
    [
        (64, 40, 6, 9),
        (33, 17, 3, 2),
        (16, 16, 4, 4),
        (7, 5, 1, 3),
        (8, 8, 2, 1),
    ],
)
def test_frames_use_at_most_palettes_times_palette_size_colours(width, height, palette_size, palettes):
    model = LimitedPalette(
        width, height, palette_size=palette_size, palettes=palettes, random_initial_palette=True, seed=7
    )
    limit = palette_size * palettes
    assert len(colours(model.frame())) <= limit
    optimize(model, gradient_of(model, mse_to(rand(1, 3, height, width, seed=8))), steps=10, learning_rate=0.05)
    assert len(colours(model.frame())) <= limit
    assert len(colours(model.decode().detach())) <= limit


def test_the_colour_limit_is_reached_not_just_respected():
    model = LimitedPalette(64, 40, palette_size=6, palettes=9, random_initial_palette=True, seed=7)
    assert len(colours(model.frame())) == 54


def test_gradients_reach_values_choices_and_palette():
    model = LimitedPalette(20, 12, palette_size=4, palettes=3, random_initial_palette=True)
    model.encode(rand(1, 3, 12, 20, seed=9))  # every value now sits exactly on a level
    F.mse_loss(model.decode(), picture(20, 12)).backward()
    for parameter in (model.value, model.logits, model.palette_param):
        assert torch.isfinite(parameter.grad).all() and parameter.grad.abs().sum() > 0


def test_lock_palette_keeps_the_palette_exactly():
    target = mse_to(picture(24, 16))
    locked = LimitedPalette(24, 16, random_initial_palette=True, lock_palette=True, seed=3)
    free = LimitedPalette(24, 16, random_initial_palette=True, seed=3)
    before = locked.palette().detach().clone()
    assert torch.equal(before, free.palette().detach())
    optimize(locked, gradient_of(locked, target), steps=10, learning_rate=0.05)
    optimize(free, gradient_of(free, target), steps=10, learning_rate=0.05)
    assert torch.equal(locked.palette(), before)
    assert not torch.equal(free.palette(), before)


def quadrants():
    """A uint8 HxWx3 picture of four colours."""
    image = torch.zeros(40, 60, 3, dtype=torch.uint8)
    image[:20, :30] = torch.tensor([255, 0, 0], dtype=torch.uint8)
    image[:20, 30:] = torch.tensor([0, 0, 128], dtype=torch.uint8)
    image[20:, :30] = torch.tensor([255, 255, 0], dtype=torch.uint8)
    image[20:, 30:] = torch.tensor([10, 10, 10], dtype=torch.uint8)
    return image


@pytest.mark.parametrize("palette_size,palettes", [(2, 2), (6, 9)])
def test_target_palette_takes_the_pictures_colours(palette_size, palettes):
    picture_colours = torch.unique(quadrants().reshape(-1, 3), dim=0).float() / 255
    model = LimitedPalette(
        24, 16, palette_size=palette_size, palettes=palettes, target_palette=quadrants().numpy(), seed=4
    )
    palette = model.palette().detach()
    assert dist(picture_colours, palette).min(1).values.max() < 1e-5  # every colour is there
    assert dist(palette, picture_colours).min(1).values.max() < 1e-5  # and no other
    optimize(model, gradient_of(model, mse_to(picture(24, 16))), steps=5, learning_rate=0.05)
    assert torch.equal(model.palette(), palette)  # pytti fixes a target palette


def test_palettes_run_dark_to_light():
    model = LimitedPalette(8, 8, palette_size=5, palettes=4, random_initial_palette=True, seed=2)
    levels = model.palette().detach().view(4, 5, 3)
    brightness = (levels.square() * torch.tensor([0.299, 0.587, 0.114])).sum(-1)
    assert (brightness.diff(dim=1) >= 0).all()


def test_random_initial_palette_differs_from_the_default_and_is_seeded():
    default = LimitedPalette(8, 8, seed=0).palette().detach()
    assert torch.equal(default, default[:, :1].expand_as(default))  # a grey ramp
    random = LimitedPalette(8, 8, random_initial_palette=True, seed=0).palette().detach()
    again = LimitedPalette(8, 8, random_initial_palette=True, seed=0).palette().detach()
    other = LimitedPalette(8, 8, random_initial_palette=True, seed=1).palette().detach()
    assert not torch.allclose(random, default, atol=0.05)
    assert torch.equal(random, again)
    assert not torch.equal(random, other)


def regularization(**weights):
    model = LimitedPalette(20, 12, random_initial_palette=True, seed=3, **weights)
    return model.regularization_loss()


def test_regularization_is_finite_and_scales_with_each_weight():
    hdr = regularization(hdr_weight=0.01, palette_normalization_weight=0)
    assert torch.isfinite(hdr) and hdr > 0
    assert torch.allclose(regularization(hdr_weight=0.03, palette_normalization_weight=0), 3 * hdr)
    norm = regularization(hdr_weight=0, palette_normalization_weight=0.2)
    assert torch.isfinite(norm) and norm != 0
    assert torch.allclose(regularization(hdr_weight=0, palette_normalization_weight=0.5), 2.5 * norm)
    assert torch.allclose(regularization(hdr_weight=0.01, palette_normalization_weight=0.2), hdr + norm)
    assert regularization(hdr_weight=0, palette_normalization_weight=0).item() == 0
    assert UnlimitedPalette(8, 8).regularization_loss().item() == 0


def test_the_default_grey_ramp_meets_the_hdr_target():
    assert LimitedPalette(8, 8, palette_normalization_weight=0).regularization_loss().item() < 1e-10
    assert LimitedPalette(8, 8, gamma=2.0, palette_normalization_weight=0).regularization_loss().item() < 1e-10


def test_regularization_stays_finite_when_one_palette_is_used_everywhere():
    model = LimitedPalette(20, 12)  # the grey ramp has black: a zero-norm colour
    model.encode(torch.full((1, 3, 12, 20), 0.5))  # every pixel on the same palette
    loss = model.regularization_loss()
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_show_palette_draws_the_palette_as_a_strip():
    model = LimitedPalette(8, 8, palette_size=3, palettes=4, random_initial_palette=True, seed=1)
    image = torch.zeros(1, 3, 40, 48)
    shown = model.show_palette(image)
    assert shown.shape == image.shape and image.abs().sum() == 0
    strip = shown[0, :, -5:].reshape(3, -1).T
    palette = model.palette().detach()
    assert dist(strip, palette).min(1).values.max() < 1e-6
    assert dist(palette, strip).min(1).values.max() < 1e-6  # all twelve colours appear
    assert shown[..., :-5, :].abs().sum() == 0
