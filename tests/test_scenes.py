import math

import pytest

from vj.language.scenes import SceneError, parse_scenes

VARS = ["t", "frame", "fLo", "fHi", "fLo_prev", "fHi_prev"]
PYTTI_EXAMPLE = (
    "a photograph of a beautiful spring day:2 | flowers blooming: 10*fHi | "
    "coloful sparks: (fHi+fLo) | sun rays: fHi | forest: fLo | "
    "ominous: fLo/(fLo + fHi) | hopeful: fHi/(fLo + fHi)"
)


def one(text, **kw):
    scenes = parse_scenes(text, VARS, **kw)
    assert len(scenes) == 1
    return scenes[0].prompts


def test_pytti_documented_example():
    prompts = one(PYTTI_EXAMPLE)
    assert [p.text for p in prompts] == [
        "a photograph of a beautiful spring day",
        "flowers blooming",
        "coloful sparks",
        "sun rays",
        "forest",
        "ominous",
        "hopeful",
    ]
    env = {"fLo": 0.2, "fHi": 0.6}
    assert [p.weight(env) for p in prompts] == pytest.approx([2, 6, 0.8, 0.6, 0.2, 0.25, 0.75])
    assert all(p.stop(env) == -math.inf and p.mask is None for p in prompts)
    assert prompts[5].weight({"fLo": 0.0, "fHi": 0.0}) == 0.0


def test_scenes_prompts_defaults_and_empty_pieces():
    scenes = parse_scenes("a || b:0.5:-0.2 | | c ||   ||", VARS)
    assert [[p.text for p in s.prompts] for s in scenes] == [["a"], ["b", "c"]]
    b = scenes[1].prompts[0]
    assert b.weight({}) == 0.5 and b.stop({}) == -0.2
    assert scenes[0].prompts[0].weight({}) == 1.0


def test_prefix_and_suffix_glued_on_every_scene():
    scenes = parse_scenes("a || b", VARS, prefix="style:0.5 | ", suffix=" | grain:0.2")
    assert [[p.text for p in s.prompts] for s in scenes] == [["style", "a", "grain"], ["style", "b", "grain"]]


def test_underscore_names_are_weights_not_masks():
    (p,) = one("glow:fLo_prev*2")
    assert p.mask is None and p.weight({"fLo_prev": 0.25}) == 0.5


@pytest.mark.parametrize(
    "text, kind, value, inverted, cutoff",
    [
        ("sky:1_u", "direction", "up", False, None),
        ("sky:fLo_r", "direction", "right", False, None),
        ("sky:1_[mask.png]", "image", "mask.png", False, None),
        ("sky:1_-[mask.png]_0.3", "image", "mask.png", True, 0.3),
        ("sky:fHi_blue sky", "semantic", "blue sky", False, None),
    ],
)
def test_masks(text, kind, value, inverted, cutoff):
    (p,) = one(text)
    assert (p.mask.kind, p.mask.value, p.mask.inverted, p.mask.cutoff) == (kind, value, inverted, cutoff)


def test_image_prompt_with_colon_in_brackets():
    (p,) = one("[C:/images/a.png]:0.5")
    assert p.is_image and p.path == "C:/images/a.png" and p.weight({}) == 0.5


def test_escapes_and_quotes():
    prompts = one(r'"ratio 16:9 photo":2 | a \| b\: c:fLo | say \"hi\"')
    assert [p.text for p in prompts] == ["ratio 16:9 photo", "a | b: c", 'say "hi"']
    assert prompts[0].weight({}) == 2
    scenes = parse_scenes(r"url x\|\|y || z", VARS)
    assert [s.prompts[0].text for s in scenes] == ["url x||y", "z"]


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("sparks:", "prompt 'sparks': empty weight"),
        ("sparks:1:", "prompt 'sparks': empty stop"),
        ("ratio 16:9 photo", "write \\: or quote"),
        ("a:1:2:3", "too many ':'"),
        ("a:flo", "did you mean 'fLo'"),
        ('"unclosed:1', "unclosed"),
        ("[a.png:1", "unclosed '['"),
        ("   ||  ", "no scenes"),
    ],
)
def test_errors_name_the_prompt(text, fragment):
    with pytest.raises(SceneError) as info:
        parse_scenes(text, VARS)
    assert fragment in str(info.value)


def test_every_bad_prompt_is_reported():
    with pytest.raises(SceneError) as info:
        parse_scenes("a: | b:zz || c:1:", VARS)
    assert len(info.value.problems) == 3
    assert "scene 2" in info.value.problems[2]
