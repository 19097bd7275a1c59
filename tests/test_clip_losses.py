"""Guidance losses: pytti's spherical distance, weights and stops; masks; pixel, edge and smoothness losses."""

import math

import pytest
import torch

from vj.engine.guidance.losses import (
    direction_mask,
    edge_loss,
    mask_coverage,
    pixel_loss,
    prompt_loss,
    spherical_distance,
    stop_gated,
    tv_loss,
)
from vj.engine.guidance.cutouts import cut_like, make_cutouts

TARGET = torch.tensor([1.0, 0.0, 0.0])


def seeded(seed):
    return torch.Generator().manual_seed(seed)


def at_angles(*angles):
    """Unit embeddings at the given angles (radians) from TARGET, as a leaf that collects gradients."""
    a = torch.tensor(angles)
    return torch.stack([a.cos(), a.sin(), torch.zeros_like(a)], 1).requires_grad_()


def descend(loss, image, rate, steps=5):
    """Loss values along `steps` plain gradient steps from `image`."""
    x, values = image.clone(), []
    for _ in range(steps):
        x.requires_grad_()
        value = loss(x)
        (grad,) = torch.autograd.grad(value, x)
        values.append(value.item())
        x = (x - rate * grad).detach()
    return values, x


def test_spherical_distance_values():
    eye = torch.eye(3)
    d = spherical_distance(eye, eye)
    assert d.shape == (3, 3)
    torch.testing.assert_close(d.diagonal(), torch.zeros(3))
    off_diagonal = d[~torch.eye(3, dtype=torch.bool)]
    torch.testing.assert_close(off_diagonal, torch.full((6,), math.pi**2 / 8))  # orthogonal: half of (pi/2)^2
    sixty = spherical_distance(at_angles(math.pi / 3).detach(), TARGET)
    torch.testing.assert_close(sixty, torch.tensor([math.pi**2 / 18]))
    opposite = spherical_distance(torch.tensor([[-2.0, 0.0, 0.0]]), TARGET)
    torch.testing.assert_close(opposite, torch.tensor([math.pi**2 / 2]))
    x, y = torch.randn(5, 8, generator=seeded(0)), torch.randn(8, generator=seeded(1))
    assert spherical_distance(x, y).shape == (5,)
    torch.testing.assert_close(spherical_distance(3 * x, 0.5 * y), spherical_distance(x, y))  # normalised


def test_identical_embeddings_have_a_finite_zero_gradient():
    x = TARGET[None].clone().requires_grad_()
    spherical_distance(x, TARGET).sum().backward()
    assert torch.equal(x.grad, torch.zeros_like(x))


def test_stop_gated():
    values = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    gated = stop_gated(values, torch.tensor([True, False, True]))
    assert torch.equal(gated, values)
    gated.sum().backward()
    assert values.grad.tolist() == [1.0, 0.0, 1.0]


def test_positive_prompt_stops_pulling_below_its_stop():
    embeds = at_angles(0.3, 1.2)  # d = 0.045 and 0.72
    stop = 0.3
    loss = prompt_loss(embeds, TARGET, 2.0, stop=stop)
    assert loss.item() == pytest.approx(2.0 * (0.3**2 + 1.2**2) / 4, rel=1e-5)  # the value ignores the stop
    loss.backward()
    assert embeds.grad[0].abs().max() == 0  # already closer than the stop
    assert embeds.grad[1].abs().max() > 0
    rested = at_angles(0.3, 1.2)
    prompt_loss(rested, TARGET, 2.0, stop=0.9).backward()
    assert rested.grad.abs().max() == 0


def test_negative_prompt_stops_pushing_beyond_its_stop():
    embeds = at_angles(0.3, 1.2)
    loss = prompt_loss(embeds, TARGET, -1.0, stop=-0.3)
    assert loss.item() == pytest.approx(-(0.3**2 + 1.2**2) / 4, rel=1e-5)
    loss.backward()
    assert embeds.grad[0].abs().max() > 0  # still close: pushed
    assert embeds.grad[1].abs().max() == 0  # d = 0.72 > 0.3: far enough
    pushed = at_angles(0.3)
    prompt_loss(pushed, TARGET, -1.0).backward()
    stepped = (pushed - 0.1 * pushed.grad).detach()
    assert spherical_distance(stepped, TARGET) > spherical_distance(pushed.detach(), TARGET)  # away from the target


def test_weight_zero_and_cut_weights():
    embeds = torch.randn(4, 8, generator=seeded(2)).requires_grad_()
    target = torch.randn(8, generator=seeded(3))
    zero = prompt_loss(embeds, target, 0.0)
    zero.backward()
    assert zero.item() == 0 and embeds.grad.abs().max() == 0
    embeds.grad = None
    weights = torch.tensor([0.0, 1.0, 3.0, 0.0])
    loss = prompt_loss(embeds, target, 1.5, cut_weights=weights)
    d = spherical_distance(embeds, target).detach()
    assert loss.item() == pytest.approx(1.5 * (d[1] + 3 * d[2]).item() / 4, rel=1e-5)
    loss.backward()
    moved = embeds.grad.abs().amax(dim=1)
    assert moved[0] == 0 and moved[3] == 0 and moved[1] > 0 and moved[2] > 0


def test_all_zero_cut_weights_give_zero_not_nan():
    embeds = torch.randn(4, 8, generator=seeded(4)).requires_grad_()
    loss = prompt_loss(embeds, torch.randn(8, generator=seeded(5)), 1.0, cut_weights=torch.zeros(4))
    loss.backward()
    assert loss.item() == 0 and torch.equal(embeds.grad, torch.zeros_like(embeds))


def test_mask_weights_keep_the_gradient_in_the_masked_region():
    """A mask's coverage as cutout weights: pixels seen only by cutouts outside the mask get no gradient."""
    height, width, size = 32, 128, 8  # crops are at most 32 pixels: those touching the right half stay right of 30
    image = torch.rand(1, 3, height, width, generator=seeded(6)).requires_grad_()
    mask = direction_mask("r", height, width)
    cuts = make_cutouts(image, 24, size, cut_pow=3.0, border=0.0, generator=seeded(7), augment=False)
    coverage = mask_coverage(cut_like(mask, cuts.grid))
    assert (coverage == 0).any() and (coverage > 0).any()
    projection = torch.randn(3 * size * size, 16, generator=seeded(8))
    target = torch.randn(16, generator=seeded(9))

    def gradient(cut_weights):
        embeds = cuts.images.flatten(1) @ projection
        (grad,) = torch.autograd.grad(
            prompt_loss(embeds, target, 1.0, cut_weights=cut_weights), image, retain_graph=True
        )
        return grad.abs().sum(1)[0]

    ones = torch.ones(1, 1, height, width, requires_grad=True)
    cut_like(ones, cuts.grid)[coverage > 0].sum().backward()
    seen = ones.grad[0, 0] > 0  # pixels some cutout touching the mask reads
    assert (~seen).float().mean() > 0.2
    masked = gradient(coverage)
    assert masked[~seen].abs().max() == 0
    assert masked[mask[0, 0] > 0].abs().max() > 0
    assert gradient(None)[~seen].abs().max() > 0  # without the weights those pixels do get gradient


def test_pixel_loss_descends_and_masks():
    target = torch.rand(1, 3, 16, 16, generator=seeded(10))
    start = torch.rand(1, 3, 16, 16, generator=seeded(11))
    values, _ = descend(lambda x: pixel_loss(x, target, 2.0), start, rate=50.0)
    assert all(a > b for a, b in zip(values, values[1:])) and values[-1] < 0.5 * values[0]
    mask = direction_mask("l", 16, 16)
    x = start.clone().requires_grad_()
    loss = pixel_loss(x, target, 2.0, mask=mask)
    expected = 2.0 * ((start - target).square() * mask).sum() / (mask.sum() * 3)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    loss.backward()
    assert x.grad[..., 8:].abs().max() == 0 and x.grad[..., :8].abs().max() > 0


def test_pixel_loss_stops():
    target = torch.rand(1, 3, 8, 8, generator=seeded(12))
    start = torch.rand(1, 3, 8, 8, generator=seeded(13))
    mse = (start - target).square().mean().item()
    for weight, stop, moves in (
        (1.0, 2 * mse, False),
        (1.0, mse / 2, True),
        (-1.0, -mse / 2, False),
        (-1.0, -2 * mse, True),
    ):
        x = start.clone().requires_grad_()
        loss = pixel_loss(x, target, weight, stop=stop)
        assert loss.item() == pytest.approx(weight * mse, rel=1e-6)
        loss.backward()
        assert (x.grad.abs().max() > 0) == moves, (weight, stop)


def test_edge_loss():
    y, x = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    target = ((x // 4 + y // 4) % 2).expand(1, 3, 16, 16) * 0.8 + 0.1  # a checkerboard of 4-pixel squares
    assert edge_loss(target + 0.05, target, 1.0).item() == pytest.approx(0.0, abs=1e-10)  # brightness is not edges
    start = torch.rand(1, 3, 16, 16, generator=seeded(14)) * 0.2 + 0.4
    values, _ = descend(lambda image: edge_loss(image, target, 3.0), start, rate=100.0)
    assert all(a > b for a, b in zip(values, values[1:])) and values[-1] < 0.7 * values[0]


def test_tv_loss():
    image = torch.tensor([[[[0.0, 1.0], [0.0, 1.0]]]])
    assert tv_loss(image, 2.0).item() == pytest.approx(2.0 * 2 / 4)  # two unit steps over four pixels
    start = torch.rand(1, 3, 16, 16, generator=seeded(15))
    smoother, _ = descend(lambda x: tv_loss(x, 1.0), start, rate=20.0)
    assert all(a > b for a, b in zip(smoother, smoother[1:]))
    _, detailed = descend(lambda x: tv_loss(x, -1.0), start, rate=20.0)
    assert tv_loss(detailed, 1.0) > tv_loss(start, 1.0)


def test_direction_masks():
    assert direction_mask("a", 3, 5).shape == (1, 1, 3, 5)
    assert direction_mask("a", 3, 5).min() == 1
    assert direction_mask("r", 2, 4)[0, 0, 0].tolist() == [0, 0, 1, 1]
    assert direction_mask("r", 2, 5)[0, 0, 0].tolist() == [0, 0, 1, 1, 1]
    assert direction_mask("l", 2, 5)[0, 0, 0].tolist() == [1, 1, 0, 0, 0]
    assert direction_mask("u", 4, 2)[0, 0, :, 0].tolist() == [1, 1, 0, 0]
    assert direction_mask("d", 4, 2)[0, 0, :, 0].tolist() == [0, 0, 1, 1]
    torch.testing.assert_close(direction_mask("u", 7, 6) + direction_mask("d", 7, 6), torch.ones(1, 1, 7, 6))
    for letter in ("x", "n", "R", ""):
        with pytest.raises(ValueError, match="direction"):
            direction_mask(letter, 4, 4)


def test_mask_coverage():
    cuts = torch.zeros(2, 1, 2, 2)
    cuts[0, 0, 0, 0] = 1
    cuts[1] = 1
    assert mask_coverage(cuts).tolist() == [0.25, 1.0]
