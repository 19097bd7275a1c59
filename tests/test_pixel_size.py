"""pytti's `pixel_size`: pixel models optimize a picture pixel_size times smaller and show it in pixel_size x
pixel_size blocks; diffusion renders smaller and is scaled up by nearest neighbour (a wrapper, BlockyEngine)."""

import math
import types

import numpy as np
import pytest
import torch
from PIL import Image

from vj import cli
from vj.engine.contract import Engine
from vj.engine.diffusion.frames import EngineSettings, FrameEngine, FrameRequest
from vj.engine.guidance.objective import CutoutSettings, GuidanceRequest, Objective, Target
from vj.engine.guidance.perceptors import tiny_perceptor
from vj.engine.motion import Motion
from vj.engine.pixels.engine import PixelEngine, PixelSettings
from vj.show.engines import BlockyEngine, EngineFactory, render_settings

PROMPT = (("a red apple", 1.0),)


def blocked(frame, block_h, block_w=None):
    """`frame` (H x W x C) rebuilt from its top-left pixel of every block_h x block_w block."""
    block_w = block_w or block_h
    h, w = frame.shape[:2]
    small = frame[::block_h, ::block_w]
    return np.repeat(np.repeat(small, block_h, axis=0), block_w, axis=1)[:h, :w]


def is_blocky(frame, block_h, block_w=None):
    return np.array_equal(frame, blocked(frame, block_h, block_w))


@pytest.fixture(scope="module")
def objective():
    return Objective([tiny_perceptor("cpu")], None, CutoutSettings(count=4))


def guided(index, motion=Motion()):
    guidance = GuidanceRequest(
        targets=(Target("text", "a red apple", 1.0),), direct_stabilization=0.5, edge_stabilization=0.2, smoothing=0.1
    )
    return FrameRequest(index, PROMPT, motion=motion, seed=1, guidance=guidance)


def parameters(model):
    return {name: tuple(p.shape) for name, p in model.named_parameters()}


@pytest.mark.parametrize("model", ["unlimited_palette", "limited_palette"])
@pytest.mark.parametrize("width, height, size", [(64, 48, 4), (50, 36, 3)])
def test_pixel_model_frames_are_blocks_of_a_small_optimized_picture(objective, model, width, height, size):
    settings = PixelSettings(model=model, width=width, height=height, steps_per_frame=2, pixel_size=size, seed=2)
    engine = PixelEngine(settings, objective)
    small_w, small_h = math.ceil(width / size), math.ceil(height / size)
    assert settings.model_size == (small_w, small_h)
    shapes = parameters(engine.model)
    if model == "unlimited_palette":
        assert shapes["pixels"] == (1, 3, small_h, small_w)
    else:
        assert shapes["value"] == (small_h, small_w)
        assert shapes["logits"] == (settings.palettes, small_h, small_w)
    before = engine.model.frame().clone()
    for i in range(2):
        frame = engine.render(guided(i, Motion(translate_x=3.0, rotate=2.0)))
        assert frame.shape == (height, width, 3)
        assert is_blocky(frame, size)
        assert engine.previous.shape == (1, 3, small_h, small_w)
    assert not torch.equal(engine.model.frame(), before)  # the objective's gradient reached the small picture


def test_the_objective_scores_the_blocky_picture_at_the_frame_size(objective):
    """As pytti: CLIP's cutouts and the pixel losses see the scaled-up picture; the stabilization reference is the
    warped small picture scaled up the same way."""
    seen = []

    class Spy:
        def __init__(self, inner):
            self.inner = inner

        def backward(self, render, request, reference=None, init=None, generator=None):
            image = render()
            seen.append((tuple(image.shape), None if reference is None else tuple(reference.shape)))
            assert is_blocky(image.detach()[0].permute(1, 2, 0).numpy(), 4)
            if reference is not None:
                assert is_blocky(reference[0].permute(1, 2, 0).numpy(), 4)
            self.inner.backward(render, request, reference, init, generator)

    settings = PixelSettings(width=64, height=40, steps_per_frame=1, pixel_size=4)
    engine = PixelEngine(settings, Spy(objective))
    engine.render(guided(0))
    engine.render(guided(1, Motion(translate_y=4.0)))
    assert seen == [((1, 3, 40, 64), None), ((1, 3, 40, 64), (1, 3, 40, 64))]


def test_motion_is_in_frame_pixels(objective):
    """translate_x 4 at pixel_size 4 moves the picture by one block: 4 frame pixels."""
    settings = PixelSettings(width=64, height=32, steps_per_frame=0, pixel_size=4, sampling_mode="nearest")
    engine = PixelEngine(settings, objective)
    still = FrameRequest(0, PROMPT)
    first = engine.render(still)
    moved = engine.render(FrameRequest(1, PROMPT, motion=Motion(translate_x=4.0)))
    assert np.array_equal(moved[:, 4:], first[:, :-4])
    assert not np.array_equal(moved, first)


@pytest.mark.parametrize("model", ["unlimited_palette", "limited_palette"])
def test_pixel_size_1_is_the_plain_pixel_model(objective, model):
    plain = PixelSettings(model=model, width=32, height=24, steps_per_frame=2)
    assert plain.pixel_size == 1 and plain.model_size == (32, 24)
    a = PixelEngine(plain, objective)
    b = PixelEngine(PixelSettings(model=model, width=32, height=24, steps_per_frame=2, pixel_size=1), objective)
    for i in range(2):
        assert np.array_equal(a.render(guided(i, Motion(zoom_x=1.0))), b.render(guided(i, Motion(zoom_x=1.0))))


def test_render_settings_divide_the_size_in_multiples_of_8_at_least_64():
    s = EngineSettings(width=512, height=288)
    assert (render_settings(s, 4).width, render_settings(s, 4).height) == (128, 72)
    assert (render_settings(s, 8).width, render_settings(s, 8).height) == (64, 64)
    assert render_settings(EngineSettings(width=48, height=48), 2).width == 48  # never above the frame
    assert render_settings(s, 4).steps == s.steps


def test_the_diffusion_wrapper_renders_small_and_shows_blocks(tiny):
    settings = EngineSettings(width=256, height=128)
    preset = types.SimpleNamespace(pixel_size=4, image_model="diffusion")
    engine = EngineFactory(preset, tiny, None, None, torch.device("cpu"))(settings)
    assert isinstance(engine, BlockyEngine) and isinstance(engine, Engine)
    assert engine.settings == settings
    assert (engine.inner.settings.width, engine.inner.settings.height) == (64, 64)
    seen = []
    render = engine.inner.render

    def spy(request):
        frame = render(request)
        seen.append((request.motion, frame.shape))
        return frame

    engine.inner.render = spy
    first = engine.render(FrameRequest(0, PROMPT, seed=3))
    second = engine.render(FrameRequest(1, PROMPT, seed=3, motion=Motion(translate_x=8.0, zoom_y=4.0, rotate=5.0)))
    for frame in (first, second):
        assert frame.shape == (128, 256, 3) and frame.dtype == np.uint8
        assert is_blocky(frame, 2, 4)
    assert [shape for _, shape in seen] == [(64, 64, 3), (64, 64, 3)]
    assert seen[1][0] == Motion(translate_x=2.0, zoom_y=2.0, rotate=5.0)  # frame pixels -> the small picture's
    engine.objective = "replaced"  # what a show sets goes to the engine that renders
    assert engine.inner.objective == "replaced"
    engine.reset()
    assert engine.inner.previous is None


def test_the_wrapper_shows_what_the_small_engine_renders(tiny):
    settings = EngineSettings(width=128, height=128)
    wrapped = BlockyEngine(FrameEngine(tiny, render_settings(settings, 2)), settings)
    plain = FrameEngine(tiny, EngineSettings(width=64, height=64))
    request = FrameRequest(0, PROMPT, seed=5)
    small = plain.render(request)
    assert np.array_equal(wrapped.render(request), np.repeat(np.repeat(small, 2, axis=0), 2, axis=1))


def test_pixel_size_1_makes_no_wrapper(tiny):
    settings = EngineSettings(width=64, height=64)
    preset = types.SimpleNamespace(image_model="diffusion", pixel_size=1)
    engine = EngineFactory(preset, tiny, None, None, torch.device("cpu"))(settings)
    assert type(engine) is FrameEngine


@pytest.mark.parametrize("image_model, block", [("unlimited_palette", 4), ("diffusion", 2)])
def test_a_preset_with_pixel_size_renders_blocky_frames(tmp_path, image_model, block):
    preset = tmp_path / "p.yaml"
    preset.write_text(f"scenes: a pixel art castle\nimage_model: {image_model}\npixel_size: 4\nsteps_per_frame: 2\n")
    frames = tmp_path / "frames"
    args = ["render", str(preset), "-o", str(tmp_path / "out.mp4"), "--frames", str(frames), "--model", "tiny"]
    args += ["--width", "128", "--height", "128", "--fps", "8", "--duration", "0.25", "--device", "cpu"]
    assert cli.main(args) == 0
    pictures = [np.asarray(Image.open(p)) for p in sorted(frames.glob("frame_*.png"))]
    assert len(pictures) == 2
    for picture in pictures:
        assert picture.shape == (128, 128, 3)
        assert is_blocky(picture, block)  # diffusion: 128 / 4 = 32 renders at 64 (its least), so blocks of 2
