"""CLIP guidance: the objective, the denoiser wrapper in the frame engine, the pixel engine, presets and renders."""

import math

import numpy as np
import pytest
import torch

from conftest import problems, run_vj, write
from vj.engine.diffusion.frames import EngineSettings, FrameEngine, FrameRequest, decode
from vj.engine.guidance.objective import (
    Assets,
    CutoutSettings,
    GuidanceRequest,
    Objective,
    PixelTarget,
    Target,
    alpha_bar,
    clip_guided,
    normalized_step,
    steer,
)
from vj.engine.motion import Motion
from vj.engine.guidance.perceptors import tiny_perceptor
from vj.engine.pixels.engine import PixelEngine, PixelSettings
from vj.engine.diffusion.sampler import denoise, txt2img_schedule, unet_model
from vj.show.director import Director
from vj.show.guidance_inputs import perceptor_names
from vj.config.loading import load_preset

SIZE = 64
CUTS = CutoutSettings(count=8, augment=False)


@pytest.fixture(scope="module")
def perceptor():
    return tiny_perceptor("cpu")


def picture(seed, size=SIZE):
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def as_image(rgb):
    return torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255.0


def objective_value(objective, image, request, reference=None, seed=0):
    with torch.no_grad():
        g = torch.Generator().manual_seed(seed)
        return float(
            objective.semantic_loss(image, request, reference, g) + objective.pixel_loss(image, request, reference)
        )


def steered(objective, request, start, steps, reference=None, scale=1.0):
    """`steps` guidance steps straight on an image's pixels (the identity as decoder), as the engine does on
    latents; the same seeded cutouts each step so that values compare."""
    request = GuidanceRequest(**{**request.__dict__, "scale": scale, "steps": steps})
    return steer(
        start.clone(), lambda x: x.clamp(0, 1), objective, request, reference, torch.Generator().manual_seed(0)
    )


def test_a_few_guided_steps_reduce_the_weighted_loss(perceptor):
    objective = Objective([perceptor], cutouts=CUTS)
    request = GuidanceRequest(targets=(Target("text", "a red balloon", 1.0), Target("text", "rain", -0.5)))
    start = as_image(picture(1))
    before = objective_value(objective, start, request)
    after = objective_value(objective, steered(objective, request, start, 5).clamp(0, 1), request)
    assert after < before


def test_stopped_prompt_gives_no_gradient_and_the_same_value(perceptor):
    objective = Objective([perceptor], cutouts=CUTS)
    image = as_image(picture(2)).requires_grad_(True)
    free = GuidanceRequest(targets=(Target("text", "a cat", 1.0),))
    stopped = GuidanceRequest(targets=(Target("text", "a cat", 1.0, stop=10.0),))  # d < 10 always: stopped
    values = []
    for request in (free, stopped):
        image.grad = None
        loss = objective.semantic_loss(image, request, generator=torch.Generator().manual_seed(0))
        loss.backward()
        values.append((float(loss.detach()), float(image.grad.abs().sum())))
    assert values[0][0] == pytest.approx(values[1][0])
    assert values[0][1] > 0 and values[1][1] == 0


def test_mask_restricts_the_gradient_to_its_region(perceptor):
    objective = Objective([perceptor], cutouts=CutoutSettings(count=16, augment=False, border=0.0))
    image = as_image(picture(3)).requires_grad_(True)
    request = GuidanceRequest(targets=(Target("text", "a tree", 1.0, mask="dir:l"),))
    objective.semantic_loss(image, request, generator=torch.Generator().manual_seed(0)).backward()
    grad = image.grad.abs().sum(dim=(0, 1))
    assert grad[:, : SIZE // 2 - 2].sum() > 0
    assert grad[:, SIZE // 2 + 2 :].sum() == 0


@pytest.mark.parametrize("kind", ["direct_stabilization", "edge_stabilization", "direct_init"])
def test_pixel_terms_pull_toward_their_target(perceptor, kind):
    objective = Objective([perceptor], cutouts=CUTS)
    target, start = as_image(picture(4)), as_image(picture(5))
    request = GuidanceRequest(**{kind: 1.0})
    reference = target if kind != "direct_init" else None
    init = target if kind == "direct_init" else None

    def loss(image):
        with torch.no_grad():
            return float(objective.pixel_loss(image, request, reference, init))

    image = start.clone()
    for _ in range(5):
        x = image.clone().requires_grad_(True)
        objective.pixel_loss(x, request, reference, init).backward()
        image = (image - 0.05 * x.grad / x.grad.pow(2).mean().sqrt()).detach()
    assert loss(image) < loss(start)


def test_semantic_init_and_image_prompts_pull_toward_the_picture(perceptor):
    target = np.zeros((SIZE, SIZE, 3), np.uint8)
    target[..., 0] = np.linspace(0, 255, SIZE).astype(np.uint8)  # a red ramp, far from the noise it starts from
    objective = Objective([perceptor], Assets(pictures={"p.png": target}, init=target), CUTS)
    start = as_image(picture(7))
    for request in (GuidanceRequest(semantic_init=1.0), GuidanceRequest(targets=(Target("picture", "p.png", 1.0),))):
        # the objective is the cutouts' spherical distance to the picture's embedding
        after = steered(objective, request, start, 8).clamp(0, 1)
        assert objective_value(objective, after, request) < objective_value(objective, start, request)


def test_direct_image_prompt_with_a_stop_stops_pulling(perceptor):
    target = picture(8)
    objective = Objective([perceptor], Assets(pictures={"p.png": target}), CUTS)
    image = as_image(picture(9)).requires_grad_(True)
    request = GuidanceRequest(pixel_targets=(PixelTarget("p.png", 1.0, stop=1.0),))  # mse < 1 always: stopped
    objective.pixel_loss(image, request).backward()
    assert float(image.grad.abs().sum()) == 0


def test_accumulation_must_divide_cutouts(perceptor):
    with pytest.raises(ValueError, match="divide cutouts"):
        Objective([perceptor], cutouts=CutoutSettings(count=10, accumulation=3))


def test_wrapper_with_nothing_to_refine_predicts_what_the_model_predicts(tiny):
    c = tiny
    cond = torch.randn(1, 77, c.text_encoder.config.hidden_size)
    timesteps = txt2img_schedule(c.scheduler, 1, "cpu")
    noise = torch.randn(1, 4, SIZE // 8, SIZE // 8, generator=torch.Generator().manual_seed(0))
    model = unet_model(c.unet, cond)
    with torch.no_grad():
        plain = denoise(model, c.scheduler, noise * c.scheduler.init_noise_sigma, timesteps)
        txt2img_schedule(c.scheduler, 1, "cpu")
        wrapped = denoise(
            clip_guided(model, c.scheduler, lambda x0: x0), c.scheduler, noise * c.scheduler.init_noise_sigma, timesteps
        )
    assert torch.allclose(plain, wrapped, atol=1e-4)


def test_normalized_step_works_with_float16_gradients():
    x = torch.zeros(1, 4, 8, 8, dtype=torch.float16)
    gradient = torch.full((1, 4, 8, 8), 1e-6, dtype=torch.float16)  # its square underflows in float16
    moved = normalized_step(x, gradient, 0.05)
    assert torch.allclose(moved.float(), torch.full_like(moved.float(), -0.05), atol=1e-3)
    assert torch.equal(normalized_step(x, torch.zeros_like(gradient), 0.05), x)


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
def test_wrapper_points_the_prediction_at_the_refined_clean_latent(tiny, prediction):
    from diffusers import EulerDiscreteScheduler

    scheduler = EulerDiscreteScheduler.from_config({**tiny.scheduler.config, "prediction_type": prediction})
    scheduler.set_timesteps(1)
    t = scheduler.timesteps[0]
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    out = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(2))
    shift = torch.full_like(x, 0.1)
    a = alpha_bar(scheduler, t)

    def x0_of(prediction_out):
        return (
            (x - (1 - a) ** 0.5 * prediction_out) / a**0.5
            if prediction == "epsilon"
            else a**0.5 * x - (1 - a) ** 0.5 * prediction_out
        )

    wrapped = clip_guided(lambda x_, t_: out, scheduler, lambda x0: x0 + shift)(x, t)
    assert torch.allclose(x0_of(wrapped), x0_of(out) + shift, atol=1e-4)


def _requests(guidance, frames=3):
    return [
        FrameRequest(
            index=i, prompts=(("a forest", 1.0),), strength=0.6, motion=Motion(zoom_x=2.0), seed=1, guidance=guidance
        )
        for i in range(frames)
    ]


def test_guided_frames_differ_and_scale_zero_is_unguided(tiny, perceptor):
    settings = EngineSettings(width=SIZE, height=SIZE, steps=1)
    objective = Objective([perceptor], cutouts=CUTS)
    guidance = GuidanceRequest(targets=(Target("text", "a red sun", 1.0),), scale=4.0)
    runs = {}
    inactive = GuidanceRequest(targets=(Target("text", "a red sun", 0.0),), scale=4.0)  # e.g. audio weights, silent
    for name, engine_objective, g in [
        ("plain", None, None),
        ("zero", objective, GuidanceRequest(scale=0.0)),
        ("inactive", objective, inactive),
        ("guided", objective, guidance),
    ]:
        engine = FrameEngine(tiny, settings, objective=engine_objective)
        runs[name] = [engine.render(r) for r in _requests(g)]
    assert all(np.array_equal(a, b) for a, b in zip(runs["plain"], runs["zero"]))
    assert all(np.array_equal(a, b) for a, b in zip(runs["plain"], runs["inactive"]))
    assert any(not np.array_equal(a, b) for a, b in zip(runs["plain"], runs["guided"]))


def test_guidance_through_the_decoder_lowers_the_loss_of_the_decoded_frame(tiny, perceptor):
    c = tiny
    objective = Objective([perceptor], cutouts=CUTS)
    request = GuidanceRequest(targets=(Target("text", "a red balloon", 1.0),), scale=1.0, steps=4)
    x0 = torch.randn(1, 4, SIZE // 8, SIZE // 8, generator=torch.Generator().manual_seed(3))

    def decode01(z):
        return decode(c, z) / 2 + 0.5

    after = steer(x0, decode01, objective, request, generator=torch.Generator().manual_seed(0))
    assert objective_value(objective, decode01(after), request) < objective_value(objective, decode01(x0), request)


@pytest.mark.parametrize("model", ["unlimited_palette", "limited_palette"])
def test_pixel_engine_frames(perceptor, model):
    settings = PixelSettings(model=model, width=SIZE, height=SIZE, steps_per_frame=3, palette_size=3, palettes=2)
    engine = PixelEngine(settings, Objective([perceptor], cutouts=CUTS), init_image=picture(10))
    guidance = GuidanceRequest(targets=(Target("text", "a blue sea", 1.0),))
    frames = [engine.render(r) for r in _requests(guidance, frames=2)]
    assert frames[0].shape == (SIZE, SIZE, 3) and frames[0].dtype == np.uint8
    if model == "limited_palette":
        for frame in frames:
            assert len(np.unique(frame.reshape(-1, 3), axis=0)) <= 6


PRESET = """
scenes: a forest:1 | [pic.png]:0.5 | rain:fLo_l:0.2 || a city:1
scene_duration: 0.5
transition_time: 0.25
frames_per_second: 4
width: 64
height: 64
model: tiny
cutouts: 4
clip_guidance_steps: 1
semantic_stabilization_weight: 0.5 + fLo
smoothing_weight: -0.1
direct_image_prompts: "[pic.png]:2"
input_audio_filters:
  - {variable_name: fLo, f_center: 105, f_width: 65}
"""


def test_director_evaluates_the_guidance_per_frame(tmp_path):
    from PIL import Image

    Image.fromarray(picture(11)).save(tmp_path / "pic.png")
    preset = load_preset(write(tmp_path, PRESET))
    assert perceptor_names(preset) == ["ViT-B-32/openai"]
    director = Director(preset)
    g = director.request(0, 0.0, {"fLo": 0.25}).guidance
    assert [(t.kind, t.key, t.weight, t.stop, t.mask) for t in g.targets] == [
        ("text", "a forest", 1.0, -math.inf, None),
        ("picture", "pic.png", 0.5, -math.inf, None),
        ("text", "rain", 0.25, 0.2, "dir:l"),
    ]
    assert g.semantic_stabilization == 0.75 and g.smoothing == -0.1 and g.steps == 1 and g.scale == 1.0
    assert g.pixel_targets == (PixelTarget("pic.png", 2.0),)
    # in the middle of the scene change both scenes' prompts guide, weighted by the mix
    g = director.request(2, 0.5 + 0.125, {"fLo": 0.0}).guidance
    weights = {t.key: t.weight for t in g.targets}
    assert weights["a city"] == pytest.approx(0.5) and weights["pic.png"] == pytest.approx(0.25)


def test_text_only_presets_load_no_perceptor(tmp_path):
    preset = load_preset(write(tmp_path, "scenes: a forest:1 | rain:2\nmodel: tiny\n"))
    assert perceptor_names(preset) == [] and Director(preset).request(0, 0.0, {}).guidance is None
    preset = load_preset(write(tmp_path, "scenes: a forest\nViTB16: true\nperceptors: [RN50/openai]\n"))
    assert perceptor_names(preset) == ["RN50/openai", "ViT-B-16/openai"]


@pytest.mark.parametrize(
    "text, message",
    [
        ("scenes: a forest\ncutouts: 10\ngradient_accumulation_steps: 3\n", "does not divide cutouts"),
        ("scenes: a forest:1_\n", "mask '' is empty"),
        ("scenes: a forest\ndirect_image_prompts: '[pic.png]:1_sky'\n", "mask 'sky' selects CLIP cutouts"),
        ("scenes: '[missing.png]:1'\n", "image file 'missing.png' not found"),
        ("scenes: a forest:1_[nomask.png]\n", "mask image 'nomask.png' not found"),
        ("scenes: a forest\ndirect_image_prompts: 'a cat:1'\n", "image file 'a cat' not found"),
        ("scenes: a forest\nimage_model: limited_palette\ntransition_mode: latent_blend\n", "latent_blend needs"),
        ("scenes: a forest\nperceptors: [ViT-B-33/openai]\n", "ViT-B-33"),
    ],
)
def test_bad_guidance_keys_are_clear_errors(tmp_path, text, message):
    found = problems(write(tmp_path, text))
    assert any(message in p for p in found), found


def test_pytti_spellings_of_image_models(tmp_path):
    preset = load_preset(write(tmp_path, "scenes: a forest\nimage_model: Limited Palette\n"))
    assert preset.image_model == "limited_palette"


def test_render_limited_palette_preset_writes_a_playable_mp4(tmp_path):
    from test_render import probe

    preset = write(
        tmp_path,
        "scenes: a red sun:1 || a blue sea:1\nimage_model: limited_palette\nscene_duration: 0.5\n"
        "frames_per_second: 4\nwidth: 64\nheight: 64\nsteps_per_frame: 2\ncutouts: 4\n"
        "palette_size: 3\npalettes: 2\nzoom_x_2d: 2\n",
    )
    out = tmp_path / "palette.mp4"
    result = run_vj("render", preset, "--model", "tiny", "-o", out)
    assert result.returncode == 0, result.stderr
    streams = probe(out)
    assert streams["video"]["codec_name"] == "h264" and int(streams["video"]["nb_read_frames"]) == 4


LIVE_PALETTE = """\
scenes: a red sun:1 | stars:knob_u || a blue sea:1
image_model: limited_palette
palette_size: 2
palettes: 3
steps_per_frame: 2
cutouts: 4
width: 64
height: 64
frames_per_second: 10
controls:
  - {name: knob, default: 0.5}
"""


def test_a_live_show_runs_a_pixel_model_and_reloads_its_guidance(tmp_path):
    from test_live_show import Clock, make_state
    from vj.show.engines import build_engines
    from vj.live.audio_feed import SilentAudio
    from vj.live.loop import EngineLoop
    from vj.live.slot import FrameSlot
    from vj.show.engines import engine_settings

    path = write(tmp_path, LIVE_PALETTE, "show.yaml")
    clock = Clock()
    state = make_state(path)
    factory = build_engines(state.preset, "cpu", "float32")
    loop = EngineLoop(
        state, factory, engine_settings(state.preset), SilentAudio(state.preset, clock), FrameSlot(), clock
    )
    loop.step()
    frame, new = loop.slot.take()
    assert new and len(np.unique(frame.rgb.reshape(-1, 3), axis=0)) <= 6
    # a reload with new prompts and cutouts keeps the perceptor and reaches the running engine
    first = factory.objective
    v2 = LIVE_PALETTE.replace("cutouts: 4", "cutouts: 8").replace("steps_per_frame: 2", "steps_per_frame: 3")
    assert factory.use_preset(load_preset(write(tmp_path, v2, "v2.yaml"), {"model": "tiny"}), loop.engine) == []
    assert loop.engine.objective is factory.objective and factory.objective.cutouts.count == 8
    assert factory.objective.perceptors == first.perceptors and loop.engine.settings.steps_per_frame == 3
    # another image model or palette needs a restart: a warning, and the show keeps its model
    other = load_preset(
        write(
            tmp_path,
            v2.replace("limited_palette", "unlimited_palette").replace("palettes: 3", "palettes: 4"),
            "v3.yaml",
        ),
        {"model": "tiny"},
    )
    warnings = factory.use_preset(other, loop.engine)
    assert any("image_model unlimited_palette" in w for w in warnings) and any("palettes" in w for w in warnings)
    assert loop.engine.settings.palettes == 3 and factory(loop.engine.settings).settings.model == "limited_palette"
    loop.step()
    assert loop.slot.take()[1]


def test_a_typed_prompt_naming_a_missing_picture_is_refused_and_a_good_one_reaches_the_guidance(tmp_path):
    from PIL import Image
    from test_live_show import Clock, make_state
    from vj.show.engines import build_engines
    from vj.live.audio_feed import SilentAudio
    from vj.live.loop import EngineLoop
    from vj.live.slot import FrameSlot
    from vj.show.engines import engine_settings

    Image.fromarray(picture(12)).save(tmp_path / "new.png")
    clock = Clock()
    state = make_state(write(tmp_path, LIVE_PALETTE, "show.yaml"))
    factory = build_engines(state.preset, "cpu", "float32")
    loop = EngineLoop(
        state, factory, engine_settings(state.preset), SilentAudio(state.preset, clock), FrameSlot(), clock
    )
    loop.on_preset.append(lambda p: factory.use_preset(p, loop.engine))
    state.replace_prompt(0, "a red sun:1 | [missing.png]:1")
    assert any("missing.png" in w for w in state.warnings.current())
    state.replace_prompt(0, "a red sun:1 | [new.png]:1_[new.png]")
    loop.step()
    assert loop.slot.take()[1] and "new.png" in factory.objective.assets.pictures


def test_render_and_check_a_guided_diffusion_preset(tmp_path):
    from PIL import Image
    from test_render import probe

    Image.fromarray(picture(13)).save(tmp_path / "pic.png")
    preset = write(
        tmp_path,
        "scenes: a forest:1 | [pic.png]:0.5 | sky:1_u:0.2\nscene_duration: 0.5\n"
        "frames_per_second: 4\nwidth: 64\nheight: 64\ncutouts: 4\nsmoothing_weight: 0.1\n",
    )
    check = run_vj("check", preset)
    assert check.returncode == 0 and "CLIP guidance: ViT-B-32/openai, 4 cutouts" in check.stdout
    out = tmp_path / "guided.mp4"
    result = run_vj("render", preset, "--model", "tiny", "-o", out)
    assert result.returncode == 0, result.stderr
    assert int(probe(out)["video"]["nb_read_frames"]) == 2
