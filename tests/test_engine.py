import numpy as np
import pytest
import torch

from vj.engine.diffusion.conditioning import combine, crossfade
from vj.engine.diffusion.frames import EngineSettings, FrameEngine, FrameRequest
from vj.engine.diffusion.models import compile_components, load_components
from vj.engine.motion import Motion, warp
from vj.engine.diffusion.sampler import img2img_schedule, noise_scales
from vj.engine.errors import ModelError

SIZE = 64


def pipeline(kind, c):
    return kind(
        vae=c.vae,
        text_encoder=c.text_encoder,
        tokenizer=c.tokenizer,
        unet=c.unet,
        scheduler=c.scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def test_first_frame_equals_diffusers_txt2img(model):
    from diffusers import StableDiffusionPipeline

    engine = FrameEngine(model, EngineSettings(width=SIZE, height=SIZE, steps=2))
    ours = engine.render_tensor(FrameRequest(0, (("a red fox", 1.0),), seed=5))
    ref = pipeline(StableDiffusionPipeline, model)(
        "a red fox",
        num_inference_steps=2,
        guidance_scale=0.0,
        height=SIZE,
        width=SIZE,
        output_type="pt",
        generator=torch.Generator().manual_seed(5),
    ).images
    np.testing.assert_allclose((ours / 2 + 0.5).clamp(0, 1).numpy(), ref.numpy(), atol=1e-5)


@pytest.mark.parametrize("strength, steps", [(0.5, 1), (0.75, 2), (0.3, 1)])
def test_next_frame_equals_diffusers_img2img(model, strength, steps):
    from diffusers import StableDiffusionImg2ImgPipeline

    engine = FrameEngine(model, EngineSettings(width=SIZE, height=SIZE, steps=steps))
    rng = np.random.default_rng(0)
    engine.previous = torch.from_numpy(rng.uniform(-1, 1, (1, 3, SIZE, SIZE)).astype(np.float32))
    image01 = engine.previous / 2 + 0.5
    ours = engine.render_tensor(FrameRequest(1, (("a red fox", 1.0),), strength=strength, seed=9))
    n = int(np.ceil(steps / strength))
    ref = pipeline(StableDiffusionImg2ImgPipeline, model)(
        "a red fox",
        image=image01,
        strength=strength,
        num_inference_steps=n,
        guidance_scale=0.0,
        output_type="pt",
        generator=torch.Generator().manual_seed(9),
    ).images
    np.testing.assert_allclose((ours / 2 + 0.5).clamp(0, 1).numpy(), ref.numpy(), atol=1e-5)


def test_deterministic_and_seed_dependent(model):
    def frames(seed):
        engine = FrameEngine(model, EngineSettings(width=SIZE, height=SIZE))
        return [
            engine.render(FrameRequest(i, (("waves", 1.0),), seed=seed, motion=Motion(1, 0, 2, 1, 1))) for i in range(3)
        ]

    a, b, c = frames(1), frames(1), frames(2)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], c[0])


def frames_of(components, count=3):
    engine = FrameEngine(components, EngineSettings(width=SIZE, height=SIZE))
    return [
        engine.render(FrameRequest(i, (("waves", 1.0), ("sparks", -0.5)), motion=Motion(1, 0, 2, 1.2, 1.2)))
        for i in range(count)
    ]


def test_half_precision_frames_match_float32(tiny):
    """The float16 path that CUDA uses, run on the CPU: same frames within rounding."""
    half = load_components("tiny", device="cpu", dtype="float16")
    assert half.unet.dtype == half.vae.dtype == half.text_encoder.dtype == torch.float16
    for a, b in zip(frames_of(tiny), frames_of(half)):
        diff = np.abs(a.astype(int) - b.astype(int))
        assert diff.mean() < 0.2 and diff.max() <= 8


def test_compiled_components_are_whole_graphs_and_render_the_same(tiny):
    """fullgraph=True raises on any graph break; the eager backend keeps the test fast (inductor is the same graph)."""
    compiled = compile_components(load_components("tiny", device="cpu"), backend="eager")
    assert all(np.array_equal(a, b) for a, b in zip(frames_of(tiny), frames_of(compiled)))


def test_conditioning_cache_hits(tiny):
    engine = FrameEngine(tiny, EngineSettings(width=SIZE, height=SIZE))
    for i in range(4):
        engine.render(FrameRequest(i, (("a", 1.0), ("b", 0.5 * i))))
    assert engine.cache.misses == 3  # "", "a", "b"
    assert engine.cache.hits == 9  # 4 frames x 3 lookups ("a", "b" and the empty prompt), less the 3 first


@pytest.mark.parametrize(
    "kind",
    [
        "EulerDiscreteScheduler",
        "LCMScheduler",
        "DDPMScheduler",
        "EulerAncestralDiscreteScheduler",
        "DPMSolverMultistepScheduler",
    ],
)
@pytest.mark.parametrize("strength", [0.3, 0.5, 0.9])
def test_noise_scales_reproduce_add_noise(tiny, kind, strength):
    import diffusers

    scheduler = getattr(diffusers, kind).from_config(tiny.scheduler.config)
    timesteps, _ = img2img_schedule(scheduler, 1, strength, torch.device("cpu"))
    keep, add = noise_scales(scheduler, timesteps[:1], torch.float32)
    x, noise = torch.randn(1, 4, 8, 8), torch.randn(1, 4, 8, 8)
    assert torch.equal(x * keep + noise * add, scheduler.add_noise(x, noise, timesteps[:1]))
    assert 0 < keep <= 1 and add > 0


def test_combine_weights():
    a, b, empty = torch.ones(1, 2, 3), torch.zeros(1, 2, 3), torch.full((1, 2, 3), 5.0)
    assert torch.equal(combine([a, b], [1.0, 0.0], empty), a)
    assert torch.allclose(combine([a, b], [1.0, 3.0], empty), torch.full_like(a, 0.25))
    assert torch.equal(combine([a, b], [0.0, 0.0], empty), empty)
    pushed = combine([a, b], [1.0, -1.0], empty)  # away from b: 1 + 0.5 * (1 - 0)
    assert torch.allclose(pushed, torch.full_like(a, 1.5))
    assert torch.equal(crossfade(a, b, 0.0, "slerp"), a) and torch.equal(crossfade(a, b, 1.0, "linear"), b)
    mid = crossfade(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]]), 0.5, "slerp")
    assert torch.allclose(mid, torch.tensor([[2**-0.5, 2**-0.5]]))


def test_identity_motion_leaves_the_frame_unchanged():
    image = torch.rand(1, 3, 16, 24)
    assert torch.equal(warp(image, Motion(), "mirror", "bicubic"), image)


@pytest.mark.parametrize("infill", ["mirror", "wrap", "black", "smear"])
def test_translation_moves_pixels(infill):
    image = torch.zeros(1, 1, 8, 8)
    image[0, 0, 3, 2] = 1.0
    moved = warp(image, Motion(translate_x=2, translate_y=1), infill, "nearest")
    assert moved[0, 0, 4, 4] == 1.0 and moved.sum() == 1.0


def test_rotation_is_counterclockwise_and_zoom_enlarges():
    image = torch.zeros(1, 1, 9, 9)
    image[0, 0, 4, 7] = 1.0  # right of center
    turned = warp(image, Motion(rotate=90), "black", "nearest")
    assert turned[0, 0, 1, 4] == 1.0  # now above center
    image = torch.zeros(1, 1, 9, 9)
    image[0, 0, 4, 5] = 1.0  # one pixel right of center
    zoomed = warp(image, Motion(zoom_x=4.5, zoom_y=4.5), "black", "nearest")  # sampling scale 0.5: 2x larger
    assert zoomed[0, 0, 4, 6] == 1.0 and zoomed[0, 0, 4, 3] == 0.0 and zoomed[0, 0, 4, 8] == 0.0


def test_wrap_brings_pixels_around():
    image = torch.zeros(1, 1, 4, 4)
    image[0, 0, 0, 3] = 1.0
    assert warp(image, Motion(translate_x=1), "wrap", "nearest")[0, 0, 0, 0] == 1.0


def test_out_of_memory_while_loading_is_one_clear_error(monkeypatch):
    def full(module, *args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 MiB")

    monkeypatch.setattr(torch.nn.Module, "to", full)
    with pytest.raises(ModelError, match=r"out of GPU memory loading 'tiny' in float32: .*--dtype float16"):
        load_components("tiny", device="cpu")


def test_allocation_failures_become_one_typed_error_and_others_pass():
    from vj.engine.errors import OutOfMemory, out_of_memory

    def raising(error):
        with out_of_memory("out of memory at 64x64"):
            raise error

    for error in (torch.OutOfMemoryError("CUDA out of memory"), MemoryError()):
        with pytest.raises(OutOfMemory, match="at 64x64"):
            raising(error)
    with pytest.raises(OutOfMemory):
        with out_of_memory("host"):
            torch.empty(1 << 60, dtype=torch.uint8)  # torch's CPU allocator: a plain RuntimeError
    with pytest.raises(RuntimeError, match="shapes do not match") as info:
        raising(RuntimeError("shapes do not match"))
    assert not isinstance(info.value, OutOfMemory)
