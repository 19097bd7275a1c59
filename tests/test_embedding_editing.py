"""Embedding editing end to end: guide images from a preset into the conditioning, and `vj morph`."""

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import problems, run_vj, write
from vj.engine.diffusion.frames import FrameRequest
from vj.show.director import Director
from vj.show.engines import build_engines
from vj.config.loading import load_preset
from vj.show.engines import engine_settings

GUIDED = """
scenes: a forest at dawn:1 | sparks:0.5
width: 64
height: 64
model: tiny
controls:
  - {name: knob, default: 0.4}
guide_images:
  - {image: ref.png, method: linear, strength: knob}
  - {image: ref.png, method: concept, concept: trees, strength: 0.5*knob, threshold: -1}
"""


@pytest.fixture
def guided(tmp_path):
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(tmp_path / "ref.png")
    return load_preset(write(tmp_path, GUIDED))


def test_guide_images_reach_the_conditioning(guided):
    factory = build_engines(guided, "cpu", "float32")
    width = factory.components.text_encoder.config.hidden_size
    assert sorted(factory.guides) == ["0", "1"] and factory.guides["0"].embedding.shape == (1 + 8 * 8, width)
    director = Director(guided)
    request = director.request(0, 0.0, {"knob": 0.8})
    assert [s for _, s in request.image_conditioning] == [0.8, pytest.approx(0.4)]
    engine = factory(engine_settings(guided))
    plain = engine.conditioning(FrameRequest(index=0, prompts=request.prompts))
    mixed = engine.conditioning(request)
    silent = engine.conditioning(director.request(0, 0.0, {"knob": 0.0}))
    assert torch.equal(silent, plain) and not torch.equal(mixed, plain)
    bos = (mixed[0, 0] - plain[0, 0]).norm() / plain[0, 0].norm()
    assert bos <= 2 * 0.15  # token 0 moves at most by its cap (a mix toward a vector of the same norm)


@pytest.mark.parametrize(
    "text, message",
    [
        ("guide_images: [{image: nothere.png}]", "image file"),
        ("guide_images: [{image: ref.png, method: concept}]", "needs a `concept` prompt"),
        ("guide_images: [{image: ref.png, method: sideways}]", "must be one of"),
        ("guide_images: [{image: ref.png, strength: nope}]", "nope"),
        ("image_model: limited_palette\nguide_images: [{image: ref.png}]", "steer the diffusion conditioning"),
        ("guide_images: [{image: ref.png, method: concept, concept: '{fur + knob*x}'}]", "no { } edits"),
        ("guide_images: [{image: ref.png, method: [linear, concept], concept: fur}]", "concept stands alone"),
        ("guide_images: [{image: ref.png, method: []}]", "expected a method or a list"),
        ("guide_images: [{image: ref.png, mapping: mean}]", "must be one of tokens, pooled"),
        ("guide_images: [{image: ref.png, threshold: half}]", "expected number -1..1 or auto, got 'half'"),
        ("guide_images: [{image: ref.png, method: threshold, floor: 0.1}]", "unknown key"),
    ],
)
def test_bad_guide_images_are_clear_errors(tmp_path, text, message):
    Image.new("RGB", (8, 8)).save(tmp_path / "ref.png")
    found = problems(write(tmp_path, f"scenes: a forest\n{text}\n"))
    assert any(message in p for p in found), found


MORPH = "scenes: a photo of a cat on a sofa:1 | soft light:0.5\nwidth: 64\nheight: 64\nframes_per_second: 4\n"


def test_vj_morph_writes_a_strip_and_a_clip(tmp_path):
    from test_render import probe

    preset = write(tmp_path, MORPH)
    strip = tmp_path / "strip.png"
    result = run_vj("morph", preset, "--from", "cat", "--to", "dog", "--steps", "4", "--model", "tiny", "-o", strip)
    assert result.returncode == 0, result.stderr
    picture = np.asarray(Image.open(strip))
    assert picture.shape == (64, 4 * 64, 3)
    first, last = picture[:, :64], picture[:, -64:]
    assert not np.array_equal(first, last)
    clip = tmp_path / "clip.mp4"
    result = run_vj("morph", preset, "--from", "cat", "--to", "dog", "--steps", "5", "--model", "tiny", "-o", clip)
    assert result.returncode == 0, result.stderr
    assert int(probe(clip)["video"]["nb_read_frames"]) == 5


def test_vj_morph_first_step_is_the_plain_sentence(tmp_path):
    from vj.engine.diffusion.frames import FrameEngine
    from vj.engine.diffusion.models import load_components

    preset = load_preset(write(tmp_path, MORPH), {"model": "tiny"})
    out = tmp_path / "strip.png"
    result = run_vj("morph", preset.path, "--from", "cat", "--to", "dog", "--steps", "2", "--model", "tiny", "-o", out)
    assert result.returncode == 0, result.stderr
    engine = FrameEngine(load_components("tiny", device="cpu"), engine_settings(preset))
    plain = engine.render(
        FrameRequest(index=0, prompts=(("a photo of a cat on a sofa", 1.0), ("soft light", 0.5)), seed=preset.seed)
    )
    assert np.array_equal(np.asarray(Image.open(out))[:, :64], plain)


GROUP_MORPH = 'scenes: "a photo of a {cat + 0.4*tabby} on a sofa:1"\nwidth: 64\nheight: 64\n'


def test_morph_inside_a_token_group_splits_that_term_and_keeps_the_others():
    from vj.commands.morph import morph_texts

    texts = morph_texts("a photo of a {1.0*cat + 0.4*tabby} on a sofa", "cat", "kitten", 3)
    assert texts == [
        "a photo of a {1.0*cat + 0.0*kitten + 0.4*tabby} on a sofa",
        "a photo of a {0.5*cat + 0.5*kitten + 0.4*tabby} on a sofa",
        "a photo of a {0.0*cat + 1.0*kitten + 0.4*tabby} on a sofa",
    ]
    # a word of a later term, with a sign and other words: only that term's word changes
    assert (
        morph_texts("{1.0*red + -0.5*tabby cat} fur", "cat", "dog", 2)[1]
        == "{1.0*red + -0.0*tabby cat + -0.5*tabby dog} fur"
    )
    assert morph_texts("a {1.0*red} dog", "cat", "dog", 2) is None


def test_vj_morph_names_the_prompts_as_written_when_the_word_is_absent(tmp_path):
    result = run_vj(
        "morph",
        write(tmp_path, GROUP_MORPH),
        "--from",
        "horse",
        "--to",
        "dog",
        "--model",
        "tiny",
        "-o",
        tmp_path / "x.png",
    )
    assert result.returncode == 2
    assert "(a photo of a {cat + 0.4*tabby} on a sofa)" in result.stderr, result.stderr


def test_vj_morph_of_a_word_in_a_token_group_starts_at_the_scene_as_written(tmp_path):
    from vj.engine.diffusion.frames import FrameEngine
    from vj.engine.diffusion.models import load_components

    preset = load_preset(write(tmp_path, GROUP_MORPH), {"model": "tiny"})
    out = tmp_path / "strip.png"
    result = run_vj(
        "morph", preset.path, "--from", "cat", "--to", "kitten", "--steps", "3", "--model", "tiny", "-o", out
    )
    assert result.returncode == 0, result.stderr
    engine = FrameEngine(load_components("tiny", device="cpu"), engine_settings(preset))
    written = engine.render(
        FrameRequest(index=0, prompts=(("a photo of a {1.0*cat + 0.4*tabby} on a sofa", 1.0),), seed=preset.seed)
    )
    strip = np.asarray(Image.open(out))
    assert np.array_equal(strip[:, :64], written) and not np.array_equal(strip[:, -64:], written)


def test_vj_morph_with_a_word_not_in_the_scene_is_one_line(tmp_path):
    result = run_vj(
        "morph", write(tmp_path, MORPH), "--from", "horse", "--to", "dog", "--model", "tiny", "-o", tmp_path / "x.png"
    )
    assert result.returncode == 2 and "'horse' is not a word of scene 1's prompts" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_a_reload_whose_guide_images_cannot_be_embedded_turns_them_off_and_frames_go_on(guided, tmp_path, monkeypatch):
    from vj.show import engines as frame_engines

    plain = load_preset(
        write(tmp_path, "scenes: a forest at dawn:1\nwidth: 64\nheight: 64\nmodel: tiny\n", "plain.yaml")
    )
    factory = build_engines(plain, "cpu", "float32")
    engine = factory(engine_settings(plain))

    def no_tower(*args):
        from vj.engine.errors import EngineError

        raise EngineError("no CLIP image tower here")

    monkeypatch.setattr(frame_engines, "pair_perceptor", no_tower)
    warnings = factory.use_preset(guided, engine)
    assert any("guide images off" in w for w in warnings) and engine.guide_images == {}
    frame = engine.render(Director(guided).request(0, 0.0, {"knob": 0.5}))
    assert frame.shape == (64, 64, 3)


def test_a_guide_item_combines_methods_and_takes_its_options(tmp_path):
    from vj.show.engines import guide_options

    Image.new("RGB", (8, 8)).save(tmp_path / "ref.png")
    preset = load_preset(
        write(
            tmp_path,
            "scenes: a forest\nguide_images:\n"
            "  - {image: ref.png, method: [linear, clustered, threshold],"
            " mapping: pooled}\n  - {image: ref.png, method: concept, concept: fur}\n",
        )
    )
    combined, concept = preset.guide_images
    assert combined.method == ("linear", "clustered", "threshold") and combined.threshold == "auto"
    assert guide_options(combined) == (("mapping", "pooled"), ("threshold", "auto"), ("bos_cap", 0.15))
    assert concept.method == ("concept",) and guide_options(concept) == (("threshold", "auto"), ("bos_cap", 0.15))


def test_guide_pictures_are_embedded_once_across_reloads(guided, monkeypatch):
    from vj.show import engines as frame_engines

    factory = build_engines(guided, "cpu", "float32")
    calls = []
    monkeypatch.setattr(frame_engines, "pair_perceptor", lambda *a: calls.append(a))
    factory.use_preset(guided, factory(engine_settings(guided)))
    assert calls == [] and sorted(factory.guides) == ["0", "1"]


@pytest.mark.parametrize("word", ["dog}", "", "x-ray + wolf", "3-d"])
def test_vj_morph_refuses_words_that_are_not_plain(tmp_path, word):
    result = run_vj(
        "morph", write(tmp_path, MORPH), "--from", "cat", "--to", word, "--model", "tiny", "-o", tmp_path / "x.png"
    )
    assert result.returncode == 2 and "--to" in result.stderr and "Traceback" not in result.stderr
