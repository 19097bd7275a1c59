"""ControlNet in the streaming engine: the frames equal diffusers' StableDiffusionControlNetImg2ImgPipeline's with the
tiny model and random tiny nets, for one and two nets acting over parts of the steps."""

import types

import numpy as np
import pytest
import torch

from test_engine import SIZE, pipeline
from vj.engine.diffusion.controlnet import (
    Control,
    check_fits,
    controlled_unet_model,
    controlnet_config,
    keep,
    load_controlnet,
    tiny_controlnet,
)
from vj.engine.diffusion.control_maps import ControlInput
from vj.engine.diffusion.frames import EngineSettings, FrameEngine, FrameRequest
from vj.engine.diffusion.models import CONFIGS
from vj.engine.errors import ModelError

PROMPT = "a red fox"


@pytest.fixture(scope="module")
def nets():
    return [tiny_controlnet(seed=1), tiny_controlnet(seed=2)]


def maps(count):
    """Control maps as HxWx3 uint8 at the frame's size."""
    rng = np.random.default_rng(3)
    return [rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8) for _ in range(count)]


def as_tensor(image):
    return torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0


def engine_frame(c, controls, strength, steps, seed=9):
    """A frame of the engine steered by `controls` ((net, ControlInput) pairs) on a random previous frame."""
    engine = FrameEngine(c, EngineSettings(width=SIZE, height=SIZE, steps=steps))
    engine.controlnets = {wanted.model: net for net, wanted in controls}
    rng = np.random.default_rng(0)
    engine.previous = torch.from_numpy(rng.uniform(-1, 1, (1, 3, SIZE, SIZE)).astype(np.float32))
    image01 = engine.previous / 2 + 0.5
    request = FrameRequest(
        1, ((PROMPT, 1.0),), strength=strength, seed=seed, controls=tuple(wanted for _, wanted in controls)
    )
    frame = engine.render_tensor(request)
    return (frame / 2 + 0.5).clamp(0, 1), image01


def controls_of(nets, images, scales, ranges):
    return [
        (net, ControlInput(f"net{i}", scale, image, start=start, end=end))
        for i, (net, image, scale, (start, end)) in enumerate(zip(nets, images, scales, ranges))
    ]


@pytest.mark.parametrize(
    "count, scales, ranges, strength, steps",
    [
        (1, [0.8], [(0.0, 0.5)], 0.75, 2),
        (1, [1.3], [(0.25, 1.0)], 0.5, 4),
        (2, [0.8, 1.2], [(0.0, 0.5), (0.25, 1.0)], 0.75, 4),
        (2, [1.0, 0.6], [(0.0, 1.0), (0.0, 1.0)], 0.5, 1),
    ],
)
def test_frames_equal_diffusers_controlnet_img2img(model, nets, count, scales, ranges, strength, steps):
    from diffusers import StableDiffusionControlNetImg2ImgPipeline

    images = maps(count)
    ours, image01 = engine_frame(model, controls_of(nets, images, scales, ranges), strength, steps)

    def kind(**parts):
        return StableDiffusionControlNetImg2ImgPipeline(controlnet=nets[0] if count == 1 else nets[:count], **parts)

    as_tensors = [as_tensor(m) for m in images]
    ref = pipeline(kind, model)(
        PROMPT,
        image=image01,
        control_image=as_tensors[0] if count == 1 else as_tensors,
        height=SIZE,
        width=SIZE,
        strength=strength,
        num_inference_steps=int(np.ceil(steps / strength)),
        guidance_scale=0.0,
        controlnet_conditioning_scale=scales[0] if count == 1 else scales,
        control_guidance_start=[r[0] for r in ranges],
        control_guidance_end=[r[1] for r in ranges],
        output_type="pt",
        generator=torch.Generator().manual_seed(9),
    ).images
    np.testing.assert_allclose(ours.numpy(), ref.numpy(), atol=1e-5)


def test_a_control_map_changes_the_frame_and_scale_zero_is_no_net(tiny, nets):
    (image,) = maps(1)
    plain, _ = engine_frame(tiny, [], 0.75, 2)
    off, _ = engine_frame(tiny, controls_of(nets, [image], [0.0], [(0.0, 1.0)]), 0.75, 2)
    on, _ = engine_frame(tiny, controls_of(nets, [image], [1.0], [(0.0, 1.0)]), 0.75, 2)
    other, _ = engine_frame(tiny, controls_of(nets, [255 - image], [1.0], [(0.0, 1.0)]), 0.75, 2)
    assert torch.equal(off, plain)
    assert (on - plain).abs().mean() > 5e-3  # the net steers the frame
    assert (on - other).abs().mean() > 5e-4  # by its control map


def test_a_net_acts_only_in_its_steps(tiny, nets):
    """keep() follows diffusers' rule, and a net whose steps are all outside its range changes nothing."""
    assert [keep(0.0, 0.5, i, 4) for i in range(4)] == [1.0, 1.0, 0.0, 0.0]
    assert [keep(0.25, 1.0, i, 4) for i in range(4)] == [0.0, 1.0, 1.0, 1.0]
    assert [keep(0.3, 0.7, i, 2) for i in range(2)] == [0.0, 0.0]
    x, t = torch.randn(1, 4, 8, 8), torch.tensor(999.0)
    cond = torch.randn(1, 77, 32)
    image = as_tensor(maps(1)[0])
    plain = controlled_unet_model(tiny.unet, cond, None, [], torch.tensor([999.0, 500.0]))(x, t)
    late = Control(nets[0], image, 1.0, 0.5, 1.0)  # acts at step 1 (t = 500) only
    model = controlled_unet_model(tiny.unet, cond, None, [late], torch.tensor([999.0, 500.0]))
    assert torch.equal(model(x, t), plain)
    assert not torch.allclose(model(x, torch.tensor(500.0)), tiny.unet(x, 500.0, cond, return_dict=False)[0])


def test_fit_checks_name_the_problem_in_one_line(tiny):
    assert check_fits(load_controlnet("tiny", device="cpu"), tiny.unet) is None
    torch.manual_seed(0)
    from diffusers import ControlNetModel

    wide = ControlNetModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        cross_attention_dim=768,
        attention_head_dim=2,
        conditioning_embedding_out_channels=(8, 8, 16, 16),
    )
    why = check_fits(wide, tiny.unet)
    assert why is not None and "\n" not in why
    assert "SD 1.x-based (cross-attention 768)" in why and "(cross-attention 32)" in why
    # the packaged SD 2.1 ControlNet shape fits sd-turbo's UNet; an SD 1.x net is refused, naming sd-turbo's family
    import json

    turbo = types.SimpleNamespace(config=json.loads((CONFIGS / "sd-turbo" / "unet.json").read_text()))
    sd21 = types.SimpleNamespace(config=controlnet_config("sd-turbo"))
    assert check_fits(sd21, turbo) is None
    sd15 = types.SimpleNamespace(config={**sd21.config, "cross_attention_dim": 768})
    why = check_fits(sd15, turbo)
    assert "\n" not in why and "needs SD 2.x-based ControlNets" in why and "fits an SD 1.5-based model" in why
    shallow = types.SimpleNamespace(config={**sd21.config, "block_out_channels": [320, 640, 1280]})
    assert "block_out_channels" in check_fits(shallow, turbo)


def test_missing_and_unknown_nets_are_one_line_errors(hub, monkeypatch):
    import huggingface_hub.constants

    with pytest.raises(ModelError, match="unknown ControlNet 'canny'"):
        load_controlnet("canny", device="cpu")
    with pytest.raises(ModelError, match="unknown ControlNet architecture 'arch:sd9'; known: arch:sd21"):
        load_controlnet("arch:sd9", device="cpu")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelError) as info:
        load_controlnet("org/controlnet-missing", device="cpu")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("the weights of 'org/controlnet-missing' are not in the Hugging Face cache")
    assert "HF_HUB_OFFLINE is set" in message and "`hf download org/controlnet-missing`" in message


def test_a_saved_net_loads_from_a_folder(tmp_path, tiny):
    net = tiny_controlnet(seed=4)
    net.save_pretrained(tmp_path / "net")
    loaded = load_controlnet(str(tmp_path / "net"), device="cpu", dtype="float32")
    assert check_fits(loaded, tiny.unet) is None
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), loaded.state_dict().values()))
