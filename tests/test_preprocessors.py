"""ControlNet preprocessors: `canny` gives cv2.Canny's edges pixel for pixel (shapes, noise, borders, several threshold
pairs, long hysteresis paths, batches, float16), `depth_map` makes near white and far black, `inverted` flips."""

import cv2
import numpy as np
import pytest
import torch

from vj.engine.diffusion.preprocessors import _hysteresis, canny, depth_map, inverted

THRESHOLDS = [(100, 200), (50, 150), (200, 100), (10, 30), (100.5, 199.7), (0, 400)]


def as_tensor(*images):
    """HxWx3 uint8 pictures as an (N, 3, H, W) float32 batch in [0, 1]."""
    return torch.stack([torch.from_numpy(i).permute(2, 0, 1) for i in images]).float() / 255


def ours(image, low, high):
    """canny's edge map of one uint8 picture as an HxW bool array."""
    return canny(as_tensor(image), low, high)[0, 0].numpy() > 0


def reference(image, low, high):
    return cv2.Canny(image, low, high) > 0


def blank(h=96, w=128, value=30):
    return np.full((h, w, 3), value, np.uint8)


def rectangle():
    image = blank()
    cv2.rectangle(image, (20, 15), (90, 70), (200, 120, 40), -1)
    return image


def circle():
    image = blank()
    cv2.circle(image, (64, 48), 30, (40, 220, 180), -1)
    return image


def diagonal_line():
    image = blank()
    cv2.line(image, (5, 90), (120, 3), (255, 255, 255), 1)
    return image


def textured(h=131, w=157, seed=0):
    """Smooth colour gradients, seeded noise and shapes: edges of every strength and direction."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    image = np.stack([xx / w * 200, yy / h * 180, (xx + yy) / (h + w) * 255], -1)
    image = cv2.GaussianBlur(image + rng.normal(0, 40, image.shape), (0, 0), 1.2)
    image = np.clip(image, 0, 255).astype(np.uint8)
    cv2.rectangle(image, (10, 20), (w // 2, h // 2), (250, 30, 40), -1)
    cv2.circle(image, (w * 2 // 3, h * 2 // 3), min(h, w) // 5, (20, 200, 90), -1)
    cv2.line(image, (0, h - 1), (w - 1, 0), (255, 255, 255), 1)
    return image


def assert_same(image, low, high, at_least):
    """Our edges equal OpenCV's, and there are enough of them that a blank map could not pass."""
    expected = reference(image, low, high)
    got = ours(image, low, high)
    assert expected.sum() >= at_least
    assert (got != expected).sum() == 0, f"{(got != expected).sum()} pixels differ of {expected.sum()} edges"


@pytest.mark.parametrize("shape", [rectangle, circle, diagonal_line])
def test_simple_shapes_give_opencv_edges_exactly(shape):
    assert_same(shape(), 100, 200, at_least=150)


@pytest.mark.parametrize("low, high", THRESHOLDS)
@pytest.mark.parametrize("seed", [0, 1])
def test_textured_pictures_give_opencv_edges_exactly(seed, low, high):
    image = textured(seed=seed)
    assert_same(image, low, high, at_least=0.02 * image.shape[0] * image.shape[1])


def test_the_thresholds_matter():
    image = textured()
    counts = [ours(image, low, high).sum() for low, high in [(10, 30), (50, 150), (100, 200), (300, 600)]]
    assert counts == sorted(counts, reverse=True) and counts[0] > 1.5 * counts[-1]


def test_low_above_high_is_swapped_as_opencv_does():
    image = as_tensor(textured())
    assert torch.equal(canny(image, 200, 100), canny(image, 100, 200))


def test_random_pictures_sizes_and_thresholds_give_opencv_edges_exactly():
    """Pure noise, blurred noise, grey (tied channels) and few-level pictures, 1 to 40 pixels a side (borders and
    tiny pictures), thresholds anywhere, negative ones included."""
    rng = np.random.default_rng(7)
    edges = 0
    for trial in range(80):
        h, w = (int(v) for v in rng.integers(1, 41, 2))
        noise = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        image = [
            noise,
            cv2.GaussianBlur(noise, (0, 0), 1.5),
            np.repeat(noise[..., :1], 3, axis=2),
            (noise // 64 * 60).astype(np.uint8),
        ][trial % 4]
        low, high = (float(v) for v in rng.uniform(-5, 400, 2))
        expected = reference(np.ascontiguousarray(image), low, high)
        assert np.array_equal(ours(np.ascontiguousarray(image), low, high), expected), (trial, h, w, low, high)
        edges += expected.sum()
    assert edges > 3000


def test_edges_on_the_outermost_pixels_are_kept_as_opencv_keeps_them():
    image = blank(48, 64, 0)
    image[:, 32:] = 200  # a vertical step through the top and bottom rows
    image[:24, :10] = 120  # a step reaching the left column
    expected = reference(image, 100, 200)
    assert expected[0].any() and expected[-1].any() and expected[:, 0].any()
    assert np.array_equal(ours(image, 100, 200), expected)


def snake(h=64, w=96):
    """A 3-pixel corridor of grey 40 meandering down a black picture (an edge over a thousand pixels long, only
    weak: 4·40 is between the thresholds 50 and 300), and a white patch at its start (strong)."""
    image = np.zeros((h, w, 3), np.uint8)
    rows = list(range(4, h - 6, 8))
    for k, y in enumerate(rows):
        image[y : y + 3, 4 : w - 4] = 40
        if k + 1 < len(rows):
            x = w - 7 if k % 2 == 0 else 4
            image[y : rows[k + 1] + 3, x : x + 3] = 40
    weak_only = image.copy()
    image[rows[0] : rows[0] + 3, 4:10] = 255
    return image, weak_only


def test_hysteresis_follows_a_long_snake_from_its_strong_end():
    image, weak_only = snake()
    assert_same(image, 50, 300, at_least=1200)
    assert not ours(weak_only, 50, 300).any()  # the snake is lit only through the strong patch


def test_hysteresis_along_a_thin_picture():
    image = np.zeros((5, 700, 3), np.uint8)
    image[2, 1:] = 40  # a long faint line, weak everywhere
    image[2, :3] = 255  # strong at one end only
    assert_same(image, 50, 300, at_least=1300)


@pytest.mark.parametrize("check_every", [1, 8, 5000])
def test_hysteresis_converges_whatever_the_check_interval(check_every):
    h, w = 31, 40
    candidates = torch.zeros(1, 1, h, w, dtype=torch.bool)
    candidates[:, :, ::2] = True  # even rows joined alternately at the right and the left end: one long path
    candidates[:, :, 1::4, -1] = True
    candidates[:, :, 3::4, 0] = True
    candidates[:, :, 20:, 20:] = False  # cut it at row 20 (~450 steps from the start): what lies past stays off
    strong = torch.zeros_like(candidates)
    strong[0, 0, 0, 0] = True
    edges = _hysteresis(strong, candidates, check_every)
    reached = candidates.clone()
    reached[:, :, 20:] = False
    reached[:, :, 20, :20] = True
    assert torch.equal(edges, reached)


def test_a_batch_gives_each_picture_its_own_edges():
    images = [rectangle(), circle(), diagonal_line(), textured(96, 128, seed=3)]
    edges = canny(as_tensor(*images), 50, 150)
    assert edges.shape == (4, 3, 96, 128)
    for k, image in enumerate(images):
        assert np.array_equal(edges[k, 0].numpy() > 0, reference(image, 50, 150))


def test_output_is_float32_zero_one_on_three_equal_channels_on_the_input_device():
    image = as_tensor(textured(), textured(seed=1))
    edges = canny(image)
    assert edges.shape == image.shape and edges.dtype == torch.float32 and edges.device == image.device
    assert set(edges.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(edges[:, 0], edges[:, 1]) and torch.equal(edges[:, 0], edges[:, 2])


def test_float16_input_gives_the_same_edges_as_float32():
    image = as_tensor(textured(), textured(seed=2))
    half = canny(image.half(), 50, 150)
    assert half.dtype == torch.float32
    assert torch.equal(half, canny(image, 50, 150))
    assert half.sum() > 1000


def test_input_is_quantised_to_uint8_first():
    """Off-grid values within half a level of k/255 (and values past 0..1) give the edges of the uint8 picture."""
    image = textured()
    exact = as_tensor(image)
    jitter = (torch.rand(exact.shape, generator=torch.Generator().manual_seed(0)) - 0.5) * (0.9 / 255)
    pushed = (exact + jitter).where((exact > 0) & (exact < 1), exact * 1.5 - 0.25)  # 0 -> -0.25, 1 -> 1.25
    assert torch.equal(canny(pushed), canny(exact))


def test_canny_refuses_pictures_that_are_not_rgb_batches():
    with pytest.raises(ValueError, match="N, 3, H, W"):
        canny(torch.rand(3, 32, 32))
    with pytest.raises(ValueError, match="N, 3, H, W"):
        canny(torch.rand(1, 1, 32, 32))


def test_depth_map_makes_near_white_and_far_black_by_inverse_depth():
    metres = torch.tensor([1.0, 2.0, 4.0]).view(1, 1, 1, 3).expand(1, 1, 5, 3)
    out = depth_map(metres)
    assert out.shape == (1, 3, 5, 3) and out.dtype == torch.float32
    # disparity 1, 1/2, 1/4 normalised: 1, 1/3, 0 (linear in metres it would be 1, 2/3, 0)
    assert torch.allclose(out[0, 0, 0], torch.tensor([1.0, 1 / 3, 0.0]))
    assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 0], out[:, 2])


def test_depth_map_normalises_each_picture_of_a_batch_to_zero_one():
    rng = torch.Generator().manual_seed(0)
    near = torch.rand(1, 1, 16, 24, generator=rng) * 5 + 0.5
    batch = torch.cat([near, near * 10, torch.full_like(near, 3.0)])
    out = depth_map(batch)
    assert out.min() >= 0 and out.max() <= 1
    assert out[0].min() == 0 and out[0].max() == 1
    assert torch.allclose(out[1], out[0], atol=1e-6)  # a scaled scene maps the same
    # nearer is brighter everywhere: the order of depths reversed
    order = near.flatten().argsort()
    assert (out[0, 0].flatten()[order].diff() <= 0).all()


def test_depth_map_of_a_flat_picture_is_mid_grey():
    out = depth_map(torch.full((2, 1, 8, 8), 2.5, dtype=torch.float16))
    assert out.dtype == torch.float32 and not out.isnan().any()
    assert torch.equal(out, torch.full((2, 3, 8, 8), 0.5))


def test_depth_map_refuses_more_than_one_channel():
    with pytest.raises(ValueError, match="N, 1, H, W"):
        depth_map(torch.rand(1, 3, 8, 8))


def test_inverted_turns_dark_lines_on_white_into_white_on_black():
    logo = torch.ones(1, 3, 8, 8)
    logo[:, :, 3, :] = 0
    out = inverted(logo)
    assert out[:, :, 3].eq(1).all() and out.sum() == 3 * 8
    assert torch.equal(inverted(out), logo)
