"""Token-level prompt arithmetic: `a photo of a {cat + 0.4*tabby - 0.2*kitten} on a sofa` (issue 11, part 1)."""

import pytest
import torch

from conftest import problems, run_vj, write
from vj.engine.diffusion.conditioning import ConditioningCache
from vj.engine.diffusion.frames import EngineSettings, FrameEngine, FrameRequest
from vj.engine.diffusion.models import load_components
from vj.engine.diffusion.prompt_edits import (
    EditSyntaxError,
    has_groups,
    parse_text,
    resample_positions,
    split_groups,
    split_terms,
    substitute,
)
from vj.show.director import Director
from vj.show.guidance_inputs import guidance_request
from vj.config.loading import load_preset
from vj.language.scenes import SceneError, parse_scenes
from vj.language.scenes.edits import parse_edits

VARS = ["t", "frame", "fLo", "knob"]
SOFA = "a photo of a {} on a sofa"


def engine_plain_text(text):
    """The plain sentence of a text with groups, by the engine's parser: every group replaced by its first term's
    words (what vj's `PromptEdits.plain` must agree with)."""
    if not has_groups(text):
        return text
    pieces, bodies = split_groups(text)
    return substitute(pieces, [split_terms(b)[0][2] for b in bodies])


def cache_of(c):
    return ConditioningCache(c.text_encoder, c.tokenizer, c.device)


def reference(c, text):
    """A plain sentence's embedding (1, 77, D) from a cache of its own."""
    return cache_of(c).embed(text)[0]


def slot(c, prefix):
    """The position of the first token after `prefix` (BOS is position 0), counted independently."""
    return len(c.tokenizer(prefix).input_ids) - 1


# ---- the engine: which positions change, and how ---------------------------------------------------------


def test_edits_touch_only_the_words_positions(tiny):
    cache = cache_of(tiny)
    edited = cache.embed("a photo of a {1.0*cat + 0.4*tabby + -0.2*kitten} on a sofa")[0]
    base = reference(tiny, "a photo of a cat on a sofa")
    s = slot(tiny, "a photo of a")
    assert s == 5
    assert torch.equal(edited[:s], base[:s])  # BOS and the prefix: bit-identical
    assert torch.equal(edited[s + 1 :], base[s + 1 :])  # the rest of the sentence and the padding
    assert not torch.equal(edited[s], base[s])


def test_zero_coefficients_give_the_plain_sentence_bit_for_bit(tiny):
    cache = cache_of(tiny)
    assert torch.equal(
        cache.embed("a photo of a {1.0*cat + 0.0*tabby + -0.0*kitten} on a sofa"),
        reference(tiny, "a photo of a cat on a sofa")[None],
    )
    assert torch.equal(
        cache.embed("a {1.0*red + 0.0*blue} cat on a {1.0*sofa + 0.0*hippopotamus}"),
        reference(tiny, "a red cat on a sofa")[None],
    )
    half = load_components("tiny", device="cpu", dtype="float16")
    assert torch.equal(
        cache_of(half).embed("a photo of a {1.0*cat + 0.0*tabby} on a sofa"),
        cache_of(half).embed("a photo of a cat on a sofa"),
    )


def test_coefficients_combine_the_term_sentences_at_the_slot(tiny):
    edited = cache_of(tiny).embed("a photo of a {1.0*cat + 0.4*tabby + -0.2*kitten} on a sofa")[0]
    s = slot(tiny, "a photo of a")
    terms = {w: reference(tiny, SOFA.format(w)).double() for w in ("cat", "tabby", "kitten")}
    expected = 1.0 * terms["cat"][s] + 0.4 * terms["tabby"][s] - 0.2 * terms["kitten"][s]
    torch.testing.assert_close(edited[s].double(), expected, rtol=0, atol=1e-5)
    # coefficients are not normalized: the first term may be scaled too
    scaled = cache_of(tiny).embed("a photo of a {0.5*cat} on a sofa")[0]
    torch.testing.assert_close(scaled[s].double(), 0.5 * terms["cat"][s], rtol=0, atol=1e-6)


def test_several_groups_each_edit_their_own_slot(tiny):
    edited = cache_of(tiny).embed("a {1.0*red + 0.5*blue} cat on a {1.0*sofa + -0.25*chair}")[0]
    base = reference(tiny, "a red cat on a sofa").double()
    first, second = slot(tiny, "a"), slot(tiny, "a red cat on a")
    blue = reference(tiny, "a blue cat on a sofa").double()  # the other group keeps its first term
    chair = reference(tiny, "a red cat on a chair").double()
    torch.testing.assert_close(edited[first].double(), base[first] + 0.5 * blue[first], rtol=0, atol=1e-5)
    torch.testing.assert_close(edited[second].double(), base[second] - 0.25 * chair[second], rtol=0, atol=1e-5)
    others = [i for i in range(edited.shape[0]) if i not in (first, second)]
    assert torch.equal(edited[others], base[others].float())


def test_resampling_rule():
    """End-aligned linear interpolation: target i reads the term at (i + 1) * n / n0 - 1, clamped."""
    assert resample_positions(2, 2) == [(0, 1, 0.0), (1, 1, 0.0)]  # equal counts: token for token
    assert resample_positions(1, 3) == [(0, 0, 0.0)] * 3  # one token broadcasts
    assert resample_positions(3, 1) == [(2, 2, 0.0)]  # one slot token: the term's last
    assert resample_positions(3, 2) == [(0, 1, 0.5), (2, 2, 0.0)]


def test_multi_token_words_follow_the_rule(tiny):
    tok = tiny.tokenizer
    assert len(tok.tokenize("hippopotamus")) == 3 and len(tok.tokenize("tabby cat")) == 2
    s = slot(tiny, "a photo of a")
    cat, hippo = reference(tiny, SOFA.format("cat")).double(), reference(tiny, SOFA.format("hippopotamus")).double()
    tabby_cat = reference(tiny, SOFA.format("tabby cat")).double()

    # a one-token slot takes a three-token term's last token; the sentence after the slot stays the base's
    one = cache_of(tiny).embed("a photo of a {1.0*cat + 0.5*hippopotamus} on a sofa")[0]
    torch.testing.assert_close(one[s].double(), cat[s] + 0.5 * hippo[s + 2], rtol=0, atol=1e-5)
    assert torch.equal(one[s + 1 :], cat[s + 1 :].float())

    # a three-token slot: a one-token term broadcasts over it
    three = cache_of(tiny).embed("a photo of a {1.0*hippopotamus + 0.5*cat} on a sofa")[0]
    for i in range(3):
        torch.testing.assert_close(three[s + i].double(), hippo[s + i] + 0.5 * cat[s], rtol=0, atol=1e-5)
    assert torch.equal(three[s + 3 :], hippo[s + 3 :].float()) and torch.equal(three[:s], hippo[:s].float())

    # two-token slot, three-token term: positions 0.5 and 2 of the term
    two = cache_of(tiny).embed("a photo of a {1.0*tabby cat + 2.0*hippopotamus} on a sofa")[0]
    h = hippo[s : s + 3]
    torch.testing.assert_close(two[s].double(), tabby_cat[s] + 2.0 * (0.5 * h[0] + 0.5 * h[1]), rtol=0, atol=1e-5)
    torch.testing.assert_close(two[s + 1].double(), tabby_cat[s + 1] + 2.0 * h[2], rtol=0, atol=1e-5)
    assert torch.equal(two[s + 2 :], tabby_cat[s + 2 :].float())


def test_the_77_token_window_drops_positions_past_its_end(tiny):
    prefix = "a " * 74  # BOS + 74 tokens: the slot starts at 75, EOS is at 76
    assert slot(tiny, prefix.strip()) == 75
    edited = cache_of(tiny).embed(prefix + "{1.0*hippopotamus + 0.5*cat} on a sofa")[0]
    base = reference(tiny, prefix + "hippopotamus on a sofa")
    cat = reference(tiny, prefix + "cat on a sofa").double()
    torch.testing.assert_close(edited[75].double(), base[75].double() + 0.5 * cat[75], rtol=0, atol=1e-5)
    assert torch.equal(edited[:75], base[:75]) and torch.equal(edited[76], base[76])  # EOS untouched
    beyond = cache_of(tiny).embed("a " * 80 + "{1.0*cat + 0.5*dog}")
    assert torch.equal(beyond, reference(tiny, "a " * 80 + "cat")[None])


class CountingEncoder(torch.nn.Module):
    def __init__(self, encoder):
        super().__init__()
        self.encoder, self.calls = encoder, 0

    @property
    def config(self):
        return self.encoder.config

    def forward(self, *args, **kw):
        self.calls += 1
        return self.encoder(*args, **kw)


def test_turning_a_coefficient_costs_no_encoder_call(tiny):
    encoder = CountingEncoder(tiny.text_encoder)
    cache = ConditioningCache(encoder, tiny.tokenizer, tiny.device)
    first = cache.embed("a photo of a {1.0*cat + 0.0*tabby + 0.0*kitten} on a sofa")
    assert encoder.calls == cache.misses == 3  # the base sentence and the two other term sentences
    outputs = [
        cache.embed(f"a photo of a {{1.0*cat + {k / 10!r}*tabby + {-k / 20!r}*kitten}} on a sofa") for k in range(1, 20)
    ]
    assert encoder.calls == cache.misses == 3
    assert all(not torch.equal(first, o) for o in outputs)
    assert len(cache._cache) == 3  # edited results stay out of the unbounded cache


def test_the_engine_wants_numbers():
    with pytest.raises(EditSyntaxError, match="not a number"):
        parse_text("a {cat + 0.4*knob*tabby}")


# ---- the preset side: grammar, DSL, check -----------------------------------------------------------------


def test_canonical_texts_round_trip_through_the_engine_parser():
    env = {"t": 0.0, "frame": 0.0, "fLo": 0.3, "knob": 1e-7}
    cases = {
        "a photo of a {cat + 0.4*tabby - 0.2*kitten} on a sofa": [[(1.0, "cat"), (0.4, "tabby"), (-0.2, "kitten")]],
        "{sci-fi city - knob*x-ray + (0.5 - fLo)*night}": [[(1.0, "sci-fi city"), (-1e-7, "x-ray"), (0.2, "night")]],
        "{-cat + -fLo*dog - -2*wolf} and {1e-3*sun}": [[(-1.0, "cat"), (-0.3, "dog"), (2.0, "wolf")], [(1e-3, "sun")]],
    }
    for text, groups in cases.items():
        edits = parse_edits(text, VARS)
        numeric = edits.text(env)
        parsed = parse_text(numeric)
        assert [[w for _, w in g] for g in parsed.groups] == [[w for _, w in g] for g in groups]
        for got, want in zip(parsed.groups, groups):
            assert [c for c, _ in got] == pytest.approx([c for c, _ in want], abs=1e-15)
        assert edits.plain == engine_plain_text(text) == engine_plain_text(numeric)
    assert parse_edits("no braces here", VARS) is None
    assert parse_edits("{cat + 0.4*tabby}", VARS).text({}) == "{1.0*cat + 0.4*tabby}"


def test_scene_prompts_carry_their_edits():
    scenes = parse_scenes(
        "a photo of a {cat + 0.5*knob*tabby - fLo*kitten} on a sofa:fLo | rain:0.5 || a {red} cat", VARS
    )
    cat, rain = scenes[0].prompts
    assert cat.text == "a photo of a {cat + 0.5*knob*tabby - fLo*kitten} on a sofa"
    assert cat.weight({"fLo": 0.25}) == 0.25 and rain.edits is None
    assert cat.edits.plain == "a photo of a cat on a sofa"
    assert cat.edits.text({"knob": 0.5, "fLo": 0.25}) == "a photo of a {1.0*cat + 0.25*tabby + -0.25*kitten} on a sofa"
    assert scenes[1].prompts[0].edits.text({}) == "a {1.0*red} cat"


def test_braces_compose_with_escapes_and_quotes():
    (quoted,) = parse_scenes('"ratio 16:9 {cat + 0.5*dog}":2', VARS)[0].prompts
    assert quoted.text == "ratio 16:9 {cat + 0.5*dog}" and quoted.weight({}) == 2
    assert quoted.edits.text({}) == "ratio 16:9 {1.0*cat + 0.5*dog}"
    (escaped,) = parse_scenes(r"a {cat\: calico + 0.5*dog\|wolf}:fLo", VARS)[0].prompts
    assert [t.words for t in escaped.edits.groups[0]] == ["cat: calico", "dog|wolf"]
    assert escaped.weight({"fLo": 0.7}) == 0.7
    (inner,) = parse_scenes('{"cat: calico" + 0.5*dog}:3', VARS)[0].prompts  # a quoted run inside a group
    assert [t.words for t in inner.edits.groups[0]] == ["cat: calico", "dog"] and inner.weight({}) == 3


@pytest.mark.parametrize(
    "text, says",
    [
        ("a {cat + 0.5*dog", "never closed"),
        ("a cat} on a sofa", "closes no '{'"),
        ("a {} cat", "empty group"),
        ("a {cat + } sofa", "empty term"),
        ("a {cat + 0.5*} sofa", "has no words"),
        ("a {cat + *dog} sofa", "no coefficient"),
        ("a {cat {dog}}", "do not nest"),
        ("a {cat + 0.5*knb*dog}", "did you mean 'knob'"),
        ("a {cat + 0.5*(fLo*dog}", "unclosed '('"),
        ("a {cat + 0.5*dog:fLo}", r"write \: or \|"),
    ],
)
def test_bad_groups_are_one_line_scene_errors(text, says):
    with pytest.raises(SceneError) as info:
        parse_scenes(f"fog | {text}", VARS)
    assert len(info.value.problems) >= 1
    problem = info.value.problems[0]
    assert "\n" not in problem and problem.startswith("scene 1, prompt 'a ") and says in problem


PRESET = """
scenes: "a photo of a {cat + 0.5*knob*tabby - 0.1*fLo*kitten} on a sofa:1 | {rain + 0.5*t*sleet}:fLo || a {red} fox"
model: tiny
width: 64
height: 64
input_audio_filters:
  - {variable_name: fLo, f_center: 100, f_width: 80}
controls:
  - {name: knob, default: 0.2}
"""


def test_vj_check_accepts_edits_and_names_bad_groups(tmp_path):
    result = run_vj("check", write(tmp_path, PRESET))
    assert result.returncode == 0, result.stdout + result.stderr
    bad = write(tmp_path, PRESET.replace("0.5*knob*tabby", "0.5*knobb*tabby"), "bad.yaml")
    [problem] = problems(bad)
    assert "prompt 'a photo of a {cat" in problem and "knob" in problem


def test_director_hands_the_engine_numeric_texts_and_the_engine_renders_them(tmp_path, tiny):
    preset = load_preset(write(tmp_path, PRESET))
    director = Director(preset)
    quiet = director.request(0, 0.0, {"knob": 0.0, "fLo": 0.0})
    loud = director.request(1, 2.0, {"knob": 0.8, "fLo": 0.5})
    assert quiet.prompts[0] == ("a photo of a {1.0*cat + 0.0*tabby + -0.0*kitten} on a sofa", 1.0)
    assert loud.prompts[0] == ("a photo of a {1.0*cat + 0.4*tabby + -0.05*kitten} on a sofa", 1.0)
    assert loud.prompts[1] == ("{1.0*rain + 1.0*sleet}", 0.5)
    assert director.request(2, 0.0, {}).prompts[0][0].startswith("a photo of a {1.0*cat + 0.1*tabby")  # default

    engine = FrameEngine(tiny, EngineSettings(width=64, height=64))
    plain = engine.conditioning(FrameRequest(0, (("a photo of a cat on a sofa", 1.0), ("rain", 0.5))))
    assert torch.equal(engine.conditioning(FrameRequest(0, (quiet.prompts[0], ("rain", 0.5)))), plain)
    assert not torch.equal(engine.conditioning(loud), plain)
    misses = engine.cache.misses
    frame = engine.render(loud)
    assert frame.shape == (64, 64, 3) and frame.dtype.name == "uint8"
    engine.render(director.request(3, 3.0, {"knob": 0.3, "fLo": 0.9}))
    assert engine.cache.misses == misses  # new coefficients: no new sentence to encode


def test_guidance_text_targets_get_the_plain_sentence(tmp_path):
    preset = load_preset(write(tmp_path, PRESET))
    targets = guidance_request(preset, 0, {"knob": 0.5, "fLo": 0.5, "t": 1.0}).targets
    assert [t.key for t in targets] == ["a photo of a cat on a sofa", "rain"]
