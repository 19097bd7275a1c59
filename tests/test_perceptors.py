"""Perceptors: the tiny CLIP's embeddings and caches, perceptor names, and loading weights from the hub cache.

No test contacts the network: the hub's endpoint is a closed loopback port or a local server that records
any request (there must be none), and the cache is a folder in tmp_path.
"""

import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F

from vj.engine import fetching
from vj.engine.guidance import perceptors
from vj.engine.errors import EngineError
from vj.engine.guidance.perceptors import PYTTI_FLAGS, PerceptorError, load_perceptor, parse_perceptor, tiny_perceptor


REVISION = "0123456789abcdef0123456789abcdef01234567"


def pixels(n, size, seed=0):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def count_calls(monkeypatch, owner, method):
    """Wraps owner.method to record the batch size of every call; returns the list of sizes."""
    calls, original = [], getattr(owner, method)

    def counted(batch, *args, **kw):
        calls.append(len(batch))
        return original(batch, *args, **kw)

    monkeypatch.setattr(owner, method, counted)
    return calls


@pytest.fixture(scope="module")
def tiny():
    return tiny_perceptor("cpu")


def test_the_tiny_perceptor_embeds_pixels_differentiably(tiny):
    assert (tiny.name, tiny.input_size, tiny.device, tiny.dtype) == ("tiny", 64, torch.device("cpu"), torch.float32)
    assert not tiny.model.training and not any(p.requires_grad for p in tiny.model.parameters())
    x = pixels(4, 64).requires_grad_()
    embeddings = tiny.encode_image(x)
    assert embeddings.shape == (4, 64) and embeddings.dtype == torch.float32
    torch.testing.assert_close(embeddings.norm(dim=-1), torch.ones(4))
    target = tiny.encode_text(["a red sunset"])
    (embeddings[0] - target[0]).norm().backward()
    assert x.grad[0].abs().sum() > 0  # the gradient reaches the pixels of the cutout scored...
    assert x.grad[1:].abs().sum() == 0  # ...and no other cutout's
    assert all(p.grad is None for p in tiny.model.parameters())


def test_encode_image_applies_the_models_normalisation(tiny):
    x = pixels(2, 64, seed=1)
    mean = torch.tensor(open_clip.OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(open_clip.OPENAI_DATASET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = F.normalize(tiny.model.encode_image((x - mean) / std), dim=-1)
    torch.testing.assert_close(tiny.encode_image(x), expected)
    with pytest.raises(ValueError, match=r"takes \(N, 3, 64, 64\) pixels, not \(2, 3, 32, 32\)"):
        tiny.encode_image(pixels(2, 32))


def test_the_tiny_perceptor_is_seeded_and_leaves_the_callers_random_state_alone():
    x = pixels(2, 64)
    torch.manual_seed(5)
    first = tiny_perceptor("cpu", seed=0)
    after = torch.rand(3)
    torch.manual_seed(5)
    torch.testing.assert_close(torch.rand(3), after)
    again, other = tiny_perceptor("cpu", seed=0), tiny_perceptor("cpu", seed=1)
    assert torch.equal(first.encode_image(x), again.encode_image(x))
    assert torch.equal(first.encode_text(["a cat"]), again.encode_text(["a cat"]))
    assert not torch.allclose(first.encode_image(x), other.encode_image(x), atol=1e-3)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_perceptors_give_the_float32_embeddings_within_rounding(tiny, dtype):
    half = tiny_perceptor("cpu", dtype=dtype)
    assert half.dtype == dtype
    x = pixels(3, 64).requires_grad_()
    embeddings = half.encode_image(x)
    assert embeddings.dtype == torch.float32
    torch.testing.assert_close(embeddings, tiny.encode_image(x), atol=0.03, rtol=0)
    torch.testing.assert_close(half.encode_text(["a cat"]), tiny.encode_text(["a cat"]), atol=0.03, rtol=0)
    embeddings[0, 0].backward()
    assert x.grad.dtype == torch.float32 and x.grad.abs().sum() > 0


def test_texts_use_clips_tokens_and_are_encoded_once(monkeypatch):
    perceptor = tiny_perceptor("cpu")
    assert perceptor.tokenizer(["a cat"])[0, :4].tolist() == [49406, 320, 2368, 49407]  # CLIP's BPE ids
    calls = count_calls(monkeypatch, perceptor.model, "encode_text")
    first = perceptor.encode_text(["a cat", "a dog"])
    assert first.shape == (2, 64) and first.dtype == torch.float32 and not first.requires_grad
    torch.testing.assert_close(first.norm(dim=-1), torch.ones(2))
    assert not torch.allclose(first[0], first[1], atol=1e-3)
    assert calls == [2]
    again = perceptor.encode_text(["a dog", "a cat", "a cat"])
    assert calls == [2]  # all cached: the text tower did not run
    assert torch.equal(again, first[[1, 0, 0]])
    perceptor.encode_text(["a bird", "a cat", "a bird"])
    assert calls == [2, 1]  # only the new text, once
    assert perceptor.encode_text([]).shape == (0, 64)


def test_pictures_are_squashed_whole_embedded_once_and_differ(monkeypatch):
    perceptor = tiny_perceptor("cpu")
    wide = np.zeros((40, 120, 3), np.uint8)
    wide[:, :40] = (255, 0, 0)  # left third red, the rest blue
    wide[:, 40:] = (0, 0, 255)
    noise = np.random.default_rng(0).integers(0, 256, (90, 70, 3), dtype=np.uint8)
    seen = []
    encode_image = perceptor.encode_image
    monkeypatch.setattr(perceptor, "encode_image", lambda x: seen.append(x) or encode_image(x))
    red_blue = perceptor.encode_picture(wide)
    assert red_blue.shape == (64,) and not red_blue.requires_grad
    torch.testing.assert_close(red_blue.norm(), torch.tensor(1.0))
    squashed = seen[0][0]
    assert seen[0].shape == (1, 3, 64, 64)
    # the whole width, squashed (a centre crop would be all blue): red up to about a third, then blue
    torch.testing.assert_close(squashed[:, :, :18].mean(dim=(1, 2)), torch.tensor([1.0, 0, 0]), atol=0.02, rtol=0)
    torch.testing.assert_close(squashed[:, :, 25:].mean(dim=(1, 2)), torch.tensor([0, 0, 1.0]), atol=0.02, rtol=0)
    assert not torch.allclose(perceptor.encode_picture(noise), red_blue, atol=1e-3)
    assert len(seen) == 2
    assert torch.equal(perceptor.encode_picture(wide.copy()), red_blue)  # same pixels, another array: cached
    assert len(seen) == 2
    with pytest.raises(ValueError, match="uint8 H x W x 3"):
        perceptor.encode_picture(wide.astype(np.float32))


def test_a_picture_at_the_input_size_is_embedded_as_its_pixels(tiny):
    picture = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    expected = tiny.encode_image(torch.from_numpy(picture).permute(2, 0, 1)[None].float() / 255)[0]
    torch.testing.assert_close(tiny.encode_picture(picture), expected, atol=1e-5, rtol=0)


def test_the_picture_cache_keeps_the_most_recent(monkeypatch):
    perceptor = tiny_perceptor("cpu")
    monkeypatch.setattr(perceptors, "PICTURE_CACHE_SIZE", 2)
    calls = count_calls(monkeypatch, perceptor, "encode_image")
    a, b, c = (np.full((8, 8, 3), value, np.uint8) for value in (0, 100, 200))
    for picture in (a, b, a, c):  # a is used again before c arrives, so b is the one dropped
        perceptor.encode_picture(picture)
    assert len(calls) == 3
    perceptor.encode_picture(a)
    assert len(calls) == 3
    perceptor.encode_picture(b)
    assert len(calls) == 4


@pytest.mark.parametrize(
    "text, expected",
    [
        ("ViTB32", ("ViT-B-32", "openai")),
        ("ViTL14_336px", ("ViT-L-14-336", "openai")),
        ("RN50x4", ("RN50x4", "openai")),
        ("ViT-B-32/openai", ("ViT-B-32", "openai")),
        ("ViT-B-32:laion2b_s34b_b79k", ("ViT-B-32", "laion2b_s34b_b79k")),
        (" ViT-B-16 : LAION2B-s34b-b88k ", ("ViT-B-16", "laion2b_s34b_b88k")),
        ("ViT-B/32", ("ViT-B-32", "openai")),  # OpenAI's name
        ("ViT-L/14/openai", ("ViT-L-14", "openai")),
        ("ViT-B-16", ("ViT-B-16", "openai")),
    ],
)
def test_perceptor_names(text, expected):
    assert parse_perceptor(text) == expected


def test_every_pytti_flag_names_open_clip_weights():
    assert set(PYTTI_FLAGS) == {
        "ViTB32",
        "ViTB16",
        "ViTL14",
        "ViTL14_336px",
        "RN50",
        "RN101",
        "RN50x4",
        "RN50x16",
        "RN50x64",
    }
    for name, tag in PYTTI_FLAGS.values():
        assert tag in open_clip.list_pretrained_tags_by_model(name)


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "ViT-B-33/openai",
            r"^unknown CLIP model 'ViT-B-33' \(did you mean 'ViT-B-32'.*\): use a pytti flag \(ViTB32, ",
        ),
        ("vitb32", r"^unknown CLIP model 'vitb32' \(did you mean 'ViTB32'"),
        (
            "ViT-B-32/laion9b",
            r"^CLIP model 'ViT-B-32' has no weights 'laion9b'.*; its weights: openai, "
            r".*laion2b_s34b_b79k",
        ),
        ("ViT-B-32:", r"^CLIP model 'ViT-B-32' has no weights ''"),
        ("ViT-H-14", r"^CLIP model 'ViT-H-14': name its weights as ViT-H-14/TAG, TAG one of laion2b_s32b_b79k"),
    ],
)
def test_unknown_perceptors_are_one_clear_line(text, message):
    with pytest.raises(PerceptorError, match=message) as info:
        parse_perceptor(text)
    assert "\n" not in str(info.value) and isinstance(info.value, EngineError)


def test_missing_weights_offline_are_one_line_at_once(hub, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(fetching, "hub_unreachable", lambda: pytest.fail("offline, yet the hub was probed"))
    start = time.monotonic()
    with pytest.raises(
        PerceptorError,
        match=r"^the weights of CLIP 'ViT-B-32/openai' \(timm/vit_base_patch32_clip_224"
        r"\.openai\) are not in the Hugging Face cache \(.*hub\) and "
        r"HF_HUB_OFFLINE is set: where there is internet run `hf download "
        r"timm/vit_base_patch32_clip_224\.openai open_clip_model\.safetensors` .* "
        r"use --model tiny$",
    ) as info:
        load_perceptor("ViT-B-32", "openai", "cpu")
    assert time.monotonic() - start < 10 and "\n" not in str(info.value)


def test_missing_weights_with_the_hub_unreachable_are_one_line_within_seconds(hub):
    start = time.monotonic()
    with pytest.raises(
        PerceptorError,
        match=r"^the weights of CLIP 'RN50/openai' \(timm/resnet50_clip\.openai\) are "
        r"not in the Hugging Face cache .* and the hub "
        r"\(http://127\.0\.0\.1:\d+\) cannot be reached \(.*refused\): where "
        r"there is internet run `hf download ",
    ) as info:
        load_perceptor(*parse_perceptor("RN50"), "cpu")
    assert time.monotonic() - start < 10 and "\n" not in str(info.value)


def test_unknown_names_are_refused_before_any_loading(hub, monkeypatch):
    monkeypatch.setattr(fetching, "hub_unreachable", lambda: pytest.fail("the hub was probed for an unknown model"))
    with pytest.raises(PerceptorError, match="unknown CLIP model 'ViT-Q-32'"):
        load_perceptor("ViT-Q-32", "openai", "cpu")
    with pytest.raises(PerceptorError, match="has no weights 'nope'"):
        load_perceptor("ViT-B-32", "nope", "cpu")


class Refuse(BaseHTTPRequestHandler):
    """A hub that fails every request: the loader must not ask it anything."""

    requests = []

    def do_GET(self):
        self.requests.append(self.path)
        self.send_error(500)

    do_HEAD = do_GET

    def log_message(self, *args):
        pass


def test_cached_weights_load_without_the_network(hub, monkeypatch):
    """The tiny CLIP saved as a cached download of a registered tag: it loads, QuickGELU and preprocessing
    as the tag says, and no request reaches the hub (a local server that records any)."""
    import huggingface_hub.constants
    from open_clip import factory, pretrained
    from safetensors.torch import save_file

    server = HTTPServer(("127.0.0.1", 0), Refuse)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    Refuse.requests = []
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", f"http://127.0.0.1:{server.server_port}")
    monkeypatch.setattr(fetching, "hub_unreachable", lambda: pytest.fail("the hub was probed for cached weights"))
    monkeypatch.setitem(factory._MODEL_CONFIGS, "Tiny-Test", {**perceptors.TINY_CONFIG, "quick_gelu": False})
    monkeypatch.setitem(
        pretrained._PRETRAINED,
        "Tiny-Test",
        {
            "test": pretrained._pcfg(
                hf_hub="org/tiny-clip/", quick_gelu=True, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25)
            )
        },
    )
    original = tiny_perceptor("cpu", seed=3)
    folder = hub / "models--org--tiny-clip"
    (folder / "snapshots" / REVISION).mkdir(parents=True)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text(REVISION)
    save_file(original.model.state_dict(), folder / "snapshots" / REVISION / "open_clip_model.safetensors")
    try:
        loaded = load_perceptor(*parse_perceptor("Tiny-Test/test"), "cpu")
    finally:
        server.shutdown()
    assert Refuse.requests == []
    assert (loaded.name, loaded.input_size) == ("Tiny-Test/test", 64)
    assert not loaded.model.training and not any(p.requires_grad for p in loaded.model.parameters())
    assert all(type(block.mlp.gelu).__name__ == "QuickGELU" for block in loaded.model.visual.transformer.resblocks)
    saved = original.model.state_dict()
    assert all(torch.equal(saved[key], value) for key, value in loaded.model.state_dict().items())
    x = pixels(2, 64)
    with torch.no_grad():
        expected = F.normalize(loaded.model.encode_image((x - 0.5) / 0.25), dim=-1)
    torch.testing.assert_close(loaded.encode_image(x), expected)
    assert loaded.encode_text(["a cat"]).shape == (1, 64)
