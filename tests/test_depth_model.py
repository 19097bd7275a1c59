"""Depth models for 3D animation (vj.engine.depth.models): metres in pytti's range at the input's size, gradients to the
pixels, the relative-to-metres map, transformers' preprocessing, and loading with no network. No test contacts the
hub: the endpoint is a closed loopback port, or the probe of it fails the test if called."""

import json
from types import SimpleNamespace

import pytest
import torch

from vj.engine import fetching
from vj.engine.depth.models import (
    DEFAULT_DEPTH_MODEL,
    IMAGENET_MEAN,
    IMAGENET_STD,
    DepthModel,
    build_architecture,
    build_tiny,
    load_depth_model,
    model_input_size,
)
from vj.engine.errors import ModelError

REVISION = "0123456789abcdef0123456789abcdef01234567"
FLAT_METRES = 1 / 0.55  # d = 0.5: halfway between 1 m and 10 m in inverse depth


@pytest.fixture(scope="module")
def tiny():
    return load_depth_model("tiny", "cpu", input_size=56)


@pytest.fixture
def no_probe(monkeypatch):
    """Fails the test if the loader asks whether the hub can be reached."""

    def probe():
        raise AssertionError("the loader went to the hub for a model it has locally")

    monkeypatch.setattr(fetching, "hub_unreachable", probe)


class FixedDepth(torch.nn.Module):
    """A stand-in depth model whose output is `depth` (N, h, w) whatever the picture: the tests choose the disparity
    or the metres and read what `metres` makes of them. It records the pixel values it was given."""

    def __init__(self, depth, kind="relative"):
        super().__init__()
        self.config = SimpleNamespace(depth_estimation_type=kind, patch_size=14)
        self.register_buffer("depth", depth)
        self.gain = torch.nn.Parameter(torch.ones(()), requires_grad=False)  # gives the model a device and dtype
        self.seen = []

    def forward(self, pixel_values):
        self.seen.append(pixel_values)
        return SimpleNamespace(predicted_depth=self.depth * self.gain)


def test_tiny_gives_metres_in_pytti_range_at_odd_sizes(tiny):
    for height, width in [(37, 53), (64, 31), (14, 14)]:
        image = torch.rand(1, 3, height, width, generator=torch.Generator().manual_seed(height))
        metres = tiny.metres(image)
        assert metres.shape == (1, 1, height, width) and metres.dtype == torch.float32
        assert metres.min() >= 1e-3 and metres.max() <= 10
        # a relative model's map spans 1..10 m: the picture's nearest point at 1 m, its farthest at 10 m
        assert metres.min() == pytest.approx(1.0, abs=1e-4) and metres.max() == pytest.approx(10.0, abs=1e-3)
    assert tiny.name == "tiny" and not tiny.metric


def test_the_depth_depends_on_the_picture(tiny):
    top = torch.zeros(1, 3, 42, 42)
    top[..., :21, :] = 1
    bottom = top.flip(-2)
    assert (tiny.metres(top) - tiny.metres(bottom)).abs().mean() > 0.1


def test_the_gradient_reaches_the_pixels_only(tiny):
    image = torch.rand(1, 3, 37, 53, generator=torch.Generator().manual_seed(1), requires_grad=True)
    (tiny.metres(image) * torch.linspace(0, 1, 53)).sum().backward()
    assert image.grad is not None and torch.isfinite(image.grad).all() and image.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in tiny.model.parameters())
    assert all(p.grad is None for p in tiny.model.parameters()) and not tiny.model.training


def test_a_relative_model_puts_higher_disparity_nearer():
    """Disparity 5 (nearest), 3 (halfway) and 1 (farthest) in thirds of the picture: 1 m, 1/0.55 m and 10 m."""
    disparity = torch.ones(1, 28, 42)
    disparity[:, :, :14] = 5.0
    disparity[:, :, 14:28] = 3.0
    model = DepthModel("fixed", FixedDepth(disparity), input_size=28)
    metres = model.metres(torch.rand(1, 3, 28, 42))
    assert model.model.seen[0].shape == (1, 3, 28, 42)  # 28 is a multiple of 14: no resize
    assert torch.allclose(metres[..., :14], torch.tensor(1.0))
    assert torch.allclose(metres[..., 14:28], torch.tensor(FLAT_METRES))
    assert torch.allclose(metres[..., 28:], torch.tensor(10.0))


def test_relative_to_metres_is_linear_in_inverse_depth_and_ignores_scale_and_offset():
    disparity = torch.linspace(0, 1, 28 * 28).view(1, 28, 28)
    a = DepthModel("a", FixedDepth(disparity), input_size=28).metres(torch.rand(1, 3, 28, 28))
    b = DepthModel("b", FixedDepth(7.5 * disparity + 3), input_size=28).metres(torch.rand(1, 3, 28, 28))
    assert torch.allclose(a, b, rtol=1e-5)
    assert torch.allclose(1 / a, (0.1 + 0.9 * disparity)[None], atol=1e-6)


def test_a_flat_picture_is_at_one_depth_not_stretched_over_the_range():
    constant = DepthModel("flat", FixedDepth(torch.full((1, 28, 28), 2.0)), input_size=28)
    assert torch.allclose(constant.metres(torch.rand(1, 3, 28, 28)), torch.tensor(FLAT_METRES))
    # rounding noise (1e-5 of the disparity) stays within 1% of that depth: min-max alone would make it 1..10 m
    noise = 2.0 + 2e-5 * torch.rand(1, 28, 28, generator=torch.Generator().manual_seed(0))
    metres = DepthModel("nearly flat", FixedDepth(noise), input_size=28).metres(torch.rand(1, 3, 28, 28))
    assert (metres / FLAT_METRES - 1).abs().max() < 0.01


def test_a_metric_model_is_clipped_to_pytti_range():
    depth = torch.linspace(-5, 50, 28 * 28).view(1, 28, 28)
    model = DepthModel("metric", FixedDepth(depth, kind="metric"), input_size=28)
    metres = model.metres(torch.rand(1, 3, 28, 28))
    assert model.metric and torch.equal(metres, depth.clamp(1e-3, 10)[None])


def test_the_output_is_resized_bilinearly_to_the_input():
    """The model sees 28x42 for a 56x84 picture; its map comes back at 56x84 as bilinear interpolation makes it."""
    depth = torch.linspace(0.5, 9.5, 28 * 42).view(1, 28, 42)
    model = DepthModel("metric", FixedDepth(depth, kind="metric"), input_size=28)
    metres = model.metres(torch.rand(1, 3, 56, 84))
    assert model.model.seen[0].shape == (1, 3, 28, 42)
    expected = torch.nn.functional.interpolate(depth[None], size=(56, 84), mode="bilinear", align_corners=False)
    assert metres.shape == (1, 1, 56, 84) and torch.allclose(metres, expected)


@pytest.mark.parametrize("size", [(37, 53), (300, 600), (700, 400), (512, 512)])
def test_preprocessing_matches_transformers_image_processor(size):
    """The processor of Depth Anything's checkpoints (keep_aspect_ratio, multiples of 14, bicubic, ImageNet
    normalisation) on the same float picture: the same size and the same values."""
    from transformers import DPTImageProcessor

    processor = DPTImageProcessor(
        size={"height": 266, "width": 266},
        keep_aspect_ratio=True,
        ensure_multiple_of=14,
        resample=3,  # PIL's BICUBIC, as the checkpoints' preprocessor_config.json says
        image_mean=list(IMAGENET_MEAN),
        image_std=list(IMAGENET_STD),
    )
    image = torch.rand(3, *size, generator=torch.Generator().manual_seed(size[0]))
    expected = processor(images=image, do_rescale=False, return_tensors="pt").pixel_values
    model = DepthModel("fixed", FixedDepth(torch.ones(1, 14, 14)), input_size=266)
    mine = model.pixel_values(image[None])
    assert mine.shape == expected.shape and torch.allclose(mine, expected, atol=1e-5)


def test_the_input_size_rule_is_transformers():
    from transformers.models.dpt.image_processing_dpt import get_resize_output_image_size

    generator = torch.Generator().manual_seed(0)
    for _ in range(300):
        height, width = (int(v) for v in torch.randint(1, 2000, (2,), generator=generator))
        input_size = int(torch.randint(14, 1000, (1,), generator=generator))
        theirs = get_resize_output_image_size(torch.empty(0, height, width), (input_size, input_size), True, 14)
        theirs = tuple(side or 14 for side in (theirs.height, theirs.width))  # a side of 0 pixels is one patch here
        assert model_input_size(height, width, input_size) == theirs, (height, width, input_size)
    assert model_input_size(512, 768, 518) == (518, 784) and model_input_size(512, 512, 266) == (266, 266)


def test_the_model_computes_in_its_dtype_and_returns_float32():
    model = load_depth_model("tiny", "cpu", dtype="bfloat16", input_size=56)
    assert model.dtype == torch.bfloat16 and next(model.model.parameters()).dtype == torch.bfloat16
    metres = model.metres(torch.rand(1, 3, 37, 53).half())  # any input dtype
    assert metres.dtype == torch.float32 and metres.shape == (1, 1, 37, 53)
    assert metres.min() >= 1e-3 and metres.max() <= 10 and torch.isfinite(metres).all()


def test_tiny_is_the_same_model_every_time():
    a, b = build_tiny(), build_tiny()
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_a_saved_model_loads_from_a_folder_and_the_hub_cache_without_the_network(hub, no_probe, tiny, tmp_path):
    image = torch.rand(1, 3, 37, 53, generator=torch.Generator().manual_seed(2))
    expected = tiny.metres(image)
    tiny.model.save_pretrained(tmp_path / "tiny-depth")
    from_folder = load_depth_model(str(tmp_path / "tiny-depth"), "cpu", input_size=56)
    assert from_folder.name == str(tmp_path / "tiny-depth")
    assert torch.equal(from_folder.metres(image), expected)
    repo = hub / "models--org--tiny-depth"
    tiny.model.save_pretrained(repo / "snapshots" / REVISION)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(REVISION)
    assert torch.equal(load_depth_model("org/tiny-depth", "cpu", input_size=56).metres(image), expected)


def test_missing_weights_offline_are_one_line_naming_the_id(hub, no_probe, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read at import; set it as it is read
    with pytest.raises(
        ModelError,
        match=rf"^the weights of '{DEFAULT_DEPTH_MODEL}' are not in the Hugging Face cache \(.*hub\) and "
        rf"HF_HUB_OFFLINE is set: where there is internet run `hf download {DEFAULT_DEPTH_MODEL}`.*"
        r"'arch:depth-anything-small' \(benchmarks\)$",
    ) as info:
        load_depth_model(DEFAULT_DEPTH_MODEL, "cpu")
    assert "\n" not in str(info.value)


def test_missing_weights_with_the_hub_unreachable_are_one_line(hub):
    with pytest.raises(
        ModelError,
        match=r"^the weights of 'org/depth' are not in the Hugging Face cache .* and the hub "
        r"\(http://127\.0\.0\.1:\d+\) cannot be reached \(.*refused\): where there is internet run "
        r"`hf download org/depth`",
    ) as info:
        load_depth_model("org/depth", "cpu")
    assert "\n" not in str(info.value)


def test_a_folder_without_weights_or_of_another_model_is_one_line(hub, no_probe, tiny, tmp_path):
    tiny.model.config.save_pretrained(tmp_path / "config-only")
    with pytest.raises(ModelError, match=r"^could not load '.*config-only' \(depth model\): ") as info:
        load_depth_model(str(tmp_path / "config-only"), "cpu")
    assert "\n" not in str(info.value)
    (tmp_path / "dinov2").mkdir()
    (tmp_path / "dinov2" / "config.json").write_text(json.dumps({"model_type": "dinov2"}))
    with pytest.raises(ModelError, match=r"is a dinov2 model; vj's 3D depth takes Depth Anything checkpoints"):
        load_depth_model(str(tmp_path / "dinov2"), "cpu")


def test_unknown_names_are_refused_before_any_loading(hub, no_probe):
    with pytest.raises(ModelError, match=r"^unknown depth model 'adabins': use a hub id like .*'tiny' or ") as info:
        load_depth_model("adabins", "cpu")
    assert "'arch:depth-anything-small'" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(ModelError, match=r"^unknown depth architecture 'arch:nope'; known: arch:depth-anything-small"):
        load_depth_model("arch:nope", "cpu")
    with pytest.raises(ModelError, match="depth model input size 0"):
        load_depth_model("tiny", "cpu", input_size=0)


def test_arch_depth_anything_small_is_the_real_architecture():
    """Depth-Anything-V2-Small: 24.8M parameters, a ViT-S/14 (12 layers, width 384) read at layers 3, 6, 9, 12."""
    model = build_architecture("depth-anything-small")
    count = sum(p.numel() for p in model.parameters())
    assert round(count / 1e6, 1) == 24.8, count
    backbone = model.config.backbone_config
    assert (backbone.hidden_size, backbone.num_hidden_layers, backbone.patch_size) == (384, 12, 14)
    assert list(backbone.out_indices) == [3, 6, 9, 12] and model.config.depth_estimation_type == "relative"
    depth = DepthModel("arch:depth-anything-small", model.eval().requires_grad_(False), input_size=28)
    with torch.no_grad():
        metres = depth.metres(torch.rand(1, 3, 32, 48))
    assert metres.shape == (1, 1, 32, 48) and metres.min() >= 1e-3 and metres.max() <= 10
