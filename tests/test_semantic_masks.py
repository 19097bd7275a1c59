"""pytti's semantic text masks (`a dragon:2_a castle`) and its `n`/`f` masks (vj issue 19): masks that select CLIP
cutouts by giving each a stop, combined with the prompt's stop as pytti does."""

import math

import numpy as np
import pytest
import torch

from conftest import problems, run_vj, write
from vj.config.loading import load_preset
from vj.engine.guidance import objective as objective_module
from vj.engine.guidance.cutouts import make_cutouts
from vj.engine.guidance.losses import combined_stops, cutout_stops, prompt_loss, spherical_distance
from vj.engine.guidance.objective import CutoutSettings, GuidanceRequest, Objective, Target
from vj.engine.guidance.perceptors import tiny_perceptor
from vj.show.director import Director
from vj.show.guidance_inputs import mask_key

TARGET = torch.tensor([1.0, 0.0, 0.0, 0.0])  # the prompt's embedding
PHRASE = torch.tensor([0.0, 1.0, 0.0, 0.0])  # the mask phrase's embedding


@pytest.fixture(scope="module")
def perceptor():
    return tiny_perceptor("cpu")


def gradient_rows(embeds, weight, mask_stops, stop=-math.inf):
    """Which cutouts (rows of `embeds`) get a gradient from the prompt's loss; and the loss."""
    embeds = embeds.clone().requires_grad_(True)
    loss = prompt_loss(embeds, TARGET, weight, stop, mask_stops=mask_stops)
    loss.backward()
    return embeds.grad.abs().sum(-1).gt(0).tolist(), loss.item()


def semantic_stops(embeds, cutoff=None):
    return cutout_stops("semantic", cutoff, distances=spherical_distance(embeds, PHRASE))


def test_without_a_cutoff_a_cutout_rests_where_the_prompt_is_closer_than_the_phrase():
    near_target = [1.0, 0.2, 0.0, 0.0]  # closer to the prompt than to the phrase: d < d_phrase, rests
    near_phrase = [0.2, 1.0, 0.0, 0.0]  # farther from the prompt than from the phrase: pulled
    embeds = torch.tensor([near_target, near_phrase])
    stops = semantic_stops(embeds)
    assert torch.allclose(stops, spherical_distance(embeds, PHRASE))
    rows, value = gradient_rows(embeds, 2.0, stops)
    assert rows == [False, True]
    # the stop gates the gradient only: the value is the unmasked one
    assert value == pytest.approx(float(2.0 * spherical_distance(embeds, TARGET).mean()))


def test_with_a_cutoff_cutouts_far_from_the_phrase_rest_and_the_others_act():
    far_from_phrase = [1.0, 0.0, 0.3, 0.0]  # d_phrase ~ 1.23
    close_to_phrase = [1.0, 1.0, 0.0, 0.0]  # d_phrase ~ 0.31, d_prompt ~ 0.31
    embeds = torch.tensor([far_from_phrase, close_to_phrase])
    stops = semantic_stops(embeds, cutoff=0.0)  # rest where d_phrase > 0.7
    assert stops.tolist() == [1.0, 0.0]
    assert gradient_rows(embeds, 1.0, stops)[0] == [False, True]
    # the cutoff moves the threshold 0.7 + 0.3 c: at c = 2 (1.3) both act
    assert semantic_stops(embeds, cutoff=2.0).tolist() == [0.0, 0.0]
    assert semantic_stops(embeds, cutoff=-1.0).tolist() == [1.0, 0.0]  # 0.4


def test_near_and_far_select_cutouts_by_their_smaller_side():
    boxes = torch.tensor(
        [
            [0.0, 0.0, 0.3, 0.3],  # small
            [0.1, 0.1, 0.8, 0.8],  # large
            [0.0, 0.2, 0.8, 0.4],  # wide, but its smaller side is 0.4
        ]
    )
    assert cutout_stops("near", None, boxes=boxes).tolist() == [1.0, 0.0, 1.0]  # only large cutouts act
    assert cutout_stops("far", None, boxes=boxes).tolist() == [0.0, 1.0, 0.0]  # only small ones act
    assert cutout_stops("near", 0.35, boxes=boxes).tolist() == [1.0, 0.0, 0.0]  # the cutoff is the threshold
    assert cutout_stops("far", 0.35, boxes=boxes).tolist() == [0.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="unknown cutout mask"):
        cutout_stops("up", None, boxes=boxes)


def test_negative_weights_take_one_off_the_mask_stop():
    assert combined_stops(torch.tensor([1.0, 0.0, 0.25]), 2.0, -math.inf).tolist() == [1.0, 0.0, 0.25]
    assert combined_stops(torch.tensor([1.0, 0.0, 0.25]), -2.0, -math.inf).tolist() == [0.0, -1.0, -0.75]
    assert combined_stops(torch.tensor([1.0, 0.0]), -2.0, -0.5).tolist() == [0.0, -0.5]  # max with the prompt's stop
    assert combined_stops(torch.tensor([0.25, 0.0]), 2.0, 0.5).tolist() == [0.5, 0.5]
    # a pushed cutout rests once sign(w) * d = -d falls below its stop: d ~ 0.31 here
    embeds = torch.tensor([[1.0, 1.0, 0.0, 0.0]] * 3)
    assert gradient_rows(embeds, -1.0, torch.tensor([1.0, 0.0, 0.0]))[0] == [False, True, True]
    assert gradient_rows(embeds, -1.0, torch.tensor([0.0, 0.0, 0.0]), stop=-0.2)[0] == [False, False, False]
    # a positive weight uses the mask stop itself: stop 1 rests the cutout, 0 does not
    assert gradient_rows(embeds, 1.0, torch.tensor([1.0, 0.0, 0.0]))[0] == [False, True, True]


def test_cutout_boxes_are_the_crops_before_augmentation():
    image = torch.rand(1, 3, 48, 80)
    cuts = make_cutouts(image, 12, 16, cut_pow=1.0, generator=torch.Generator().manual_seed(3), augment=False)
    assert cuts.boxes.shape == (12, 4)
    x, y, w, h = cuts.boxes.unbind(-1)
    torch.testing.assert_close(w * 80, h * 48)  # square crops in pixels
    # the grid's first and last pixel centres lie half a pixel inside the box
    centres = (cuts.grid + 1) / 2  # fractions of the image
    torch.testing.assert_close(centres[:, 0, 0, 0], x + w / 32, atol=1e-5, rtol=0)
    torch.testing.assert_close(centres[:, -1, -1, 1], y + h - h / 32, atol=1e-5, rtol=0)
    augmented = make_cutouts(image, 12, 16, cut_pow=1.0, generator=torch.Generator().manual_seed(3))
    assert torch.equal(augmented.boxes, cuts.boxes)


@pytest.mark.parametrize(
    "text, key, parsed",
    [
        ("a dragon:2_a castle", "sem:a castle", ("sem", None, "a castle")),
        ("a dragon:2_a castle_0.3", "sem_0.3:a castle", ("sem", 0.3, "a castle")),
        ("x:1_n", "size:near", ("size", None, "near")),
        ("x:1_f_0.6", "size_0.6:far", ("size", 0.6, "far")),
        ("x:1_l", "dir:l", None),
        ("x:1_[m.png]", "m.png", None),
    ],
)
def test_mask_keys(text, key, parsed):
    from vj.language.scenes.dsl import parse_scenes

    (scene,) = parse_scenes(text, {})
    assert mask_key(scene.prompts[0].mask) == key
    assert objective_module._cutout_mask(key) == parsed


def spy_on_mask_stops(monkeypatch):
    """The mask stops every prompt loss of the objective receives, as a list per call."""
    seen = []

    def spy(embeds, target, weight, stop=-math.inf, cut_weights=None, mask_stops=None):
        seen.append((embeds.detach(), None if mask_stops is None else mask_stops.clone()))
        return prompt_loss(embeds, target, weight, stop, cut_weights, mask_stops)

    monkeypatch.setattr(objective_module, "prompt_loss", spy)
    return seen


def test_the_objective_gives_size_masks_the_sizes_of_its_cutouts(perceptor, monkeypatch):
    seen = spy_on_mask_stops(monkeypatch)
    settings = CutoutSettings(count=16, cut_pow=1.0, augment=False)
    objective = Objective([perceptor], cutouts=settings)
    image = torch.rand(1, 3, 128, 128)
    request = GuidanceRequest(
        targets=(Target("text", "a tree", 1.0, mask="size_0.8:near"), Target("text", "a tree", 1.0, mask="size:far"))
    )
    objective.semantic_loss(image, request, generator=torch.Generator().manual_seed(4))
    cuts = make_cutouts(image, 16, 64, cut_pow=1.0, generator=torch.Generator().manual_seed(4), augment=False)
    side = cuts.boxes[:, 2:].amin(-1)
    assert 0 < int((side < 0.8).sum()) < 16  # both kinds present
    near, far = (stops for _, stops in seen)
    assert near.tolist() == (side < 0.8).float().tolist()
    assert far.tolist() == (side > 0.5).float().tolist()


def test_the_objective_gives_semantic_masks_the_phrase_distances(perceptor, monkeypatch):
    seen = spy_on_mask_stops(monkeypatch)
    objective = Objective([perceptor], cutouts=CutoutSettings(count=8))
    request = GuidanceRequest(
        targets=(
            Target("text", "a dragon", 2.0, mask="sem:a castle"),
            Target("text", "a dragon", 2.0, mask="sem_0.3:a castle"),
            Target("text", "a dragon", 2.0),
        )
    )
    objective.semantic_loss(torch.rand(1, 3, 64, 64), request, generator=torch.Generator().manual_seed(5))
    (embeds, plain), (_, cut), (_, unmasked) = seen
    distances = spherical_distance(embeds, perceptor.encode_text(["a castle"])[0])
    torch.testing.assert_close(plain, distances)
    assert cut.tolist() == (distances > 0.7 + 0.3 * 0.3).float().tolist() and unmasked is None


def image_gradient(objective, target, image):
    image = image.clone().requires_grad_(True)
    loss = objective.semantic_loss(
        image, GuidanceRequest(targets=(target,)), generator=torch.Generator().manual_seed(6)
    )
    if loss.requires_grad:
        loss.backward()
    return 0.0 if image.grad is None else float(image.grad.abs().sum())


def test_masks_that_rest_every_cutout_leave_no_gradient(perceptor):
    objective = Objective([perceptor], cutouts=CutoutSettings(count=8))
    image = torch.rand(1, 3, 64, 64)  # a 64-pixel perceptor on a 64-pixel image: every cutout is the whole image
    # `far` rests large cutouts: a negative weight's stop becomes max(1 - 1, -inf) = 0, and -d < 0
    assert image_gradient(objective, Target("text", "a tree", -1.0, mask="size:far"), image) == 0
    assert image_gradient(objective, Target("text", "a tree", 1.0, mask="size:near"), image) > 0
    # a cutoff of -10 puts the phrase threshold at -2.3: every cutout rests
    assert image_gradient(objective, Target("text", "a tree", -1.0, mask="sem_-10.0:a castle"), image) == 0
    assert image_gradient(objective, Target("text", "a tree", 1.0, mask="sem_100.0:a castle"), image) > 0


def test_the_phrase_is_encoded_once_per_perceptor(monkeypatch):
    perceptors = [tiny_perceptor("cpu"), tiny_perceptor("cpu", seed=1)]
    calls = []
    for index, p in enumerate(perceptors):

        def counted(texts, p=p, index=index, encode=p.encode_text):
            calls.append((index, tuple(texts)))
            return encode(texts)

        monkeypatch.setattr(p, "encode_text", counted)
    objective = Objective(perceptors, cutouts=CutoutSettings(count=4))
    request = GuidanceRequest(
        targets=(
            Target("text", "a dragon", 1.0, mask="sem:a castle"),
            Target("text", "a knight", 1.0, mask="sem_0.5:a castle"),
        )
    )
    for seed in range(3):
        objective.semantic_loss(torch.rand(1, 3, 64, 64), request, generator=torch.Generator().manual_seed(seed))
    assert sorted(calls) == sorted((i, (text,)) for i in (0, 1) for text in ("a dragon", "a knight", "a castle"))


PRESET = """
scenes: a dragon:2_a castle | x:1_n | y:0.5_f_0.4 | z:1_sky_0.3
image_model: unlimited_palette
model: tiny
width: 64
height: 64
cutouts: 4
steps_per_frame: 1
scene_duration: 0.5
frames_per_second: 4
"""


def test_a_preset_with_semantic_and_size_masks_checks_and_renders_a_guided_step(tmp_path, monkeypatch):
    from vj.show.engines import build_engines, engine_settings

    path = write(tmp_path, PRESET)
    check = run_vj("check", path)
    assert check.returncode == 0, check.stdout + check.stderr
    preset = load_preset(path)
    assert not [w for w in preset.warnings if "cutoff" in w]  # cutoffs mean something on these masks
    request = Director(preset).request(0, 0.0, {})
    assert [(t.key, t.mask) for t in request.guidance.targets] == [
        ("a dragon", "sem:a castle"),
        ("x", "size:near"),
        ("y", "size_0.4:far"),
        ("z", "sem_0.3:sky"),
    ]
    seen = spy_on_mask_stops(monkeypatch)
    factory = build_engines(preset, device="cpu")
    frame = factory(engine_settings(preset)).render(request)
    assert frame.shape == (64, 64, 3) and frame.dtype == np.uint8
    assert len(seen) == 4 and all(stops is not None and stops.shape == (4,) for _, stops in seen)


def test_cutoffs_on_pixel_masks_still_warn_and_direct_prompts_refuse_cutout_masks(tmp_path):
    preset = load_preset(write(tmp_path, "scenes: a forest:1_l_0.3\n"))
    assert any("the mask cutoff 0.3 has no effect on direction masks" in w for w in preset.warnings)
    from PIL import Image

    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "pic.png")
    found = problems(write(tmp_path, "scenes: a forest\ndirect_image_prompts: 'pic.png:1_a castle'\n"))
    assert any("mask 'a castle' selects CLIP cutouts, a pixel loss has none" in p for p in found), found
    found = problems(write(tmp_path, "scenes: a forest\ndirect_image_prompts: 'pic.png:1_n'\n"))
    assert any("mask 'near' selects CLIP cutouts" in p for p in found), found


def test_an_empty_mask_is_an_error(tmp_path):
    found = problems(write(tmp_path, "scenes: a forest:1_\n"))
    assert any("mask '' is empty" in p for p in found), found
