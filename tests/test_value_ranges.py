"""Every expression value that reaches a tensor is held in its range: no NaN, inf or black frames from a wild
formula, a knob or an OSC value; constants outside a range are refused at load."""

import math

import numpy as np
import pytest

from conftest import problems, write
from vj.show.director import Director
from vj.config.loading import load_preset
from vj.language.value_ranges import KEY_KINDS, RANGES, ValueGuard

WILD = """
scenes: "a photo of a {cat + 1e308*knob*tabby} on a sofa:1e308*knob | rain:1 || a city:1"
scene_duration: 1
transition_time: 0.5
width: 64
height: 64
model: tiny
cutouts: 2
clip_guidance_steps: 1
controls:
  - {name: knob, default: 0}
guide_images:
  - {image: ref.png, strength: 1e308*knob}
"""
KEYED = {key: "1e308*knob" for key in KEY_KINDS}
KEYED["strength"] = "1e308*knob"


def _wild(tmp_path, extra=""):
    from PIL import Image

    Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(tmp_path / "ref.png")
    return load_preset(write(tmp_path, WILD + "".join(f"{k}: {v}\n" for k, v in KEYED.items()) + extra))


def _numbers(request):
    """Every number of a FrameRequest that reaches the engine, named."""
    out = {f"weight {t}": w for t, w in request.prompts + (request.previous_prompts or ())}
    out.update(
        {f"{k}": getattr(request.motion, k) for k in ("translate_x", "translate_y", "rotate", "zoom_x", "zoom_y")}
    )
    out.update(strength=request.strength, init_weight=request.init_weight)
    out.update({f"guide {k}": s for k, s in request.image_conditioning})
    g = request.guidance
    out.update({f"target {t.key}": t.weight for t in g.targets})
    out.update(
        scale=g.scale,
        semantic_init=g.semantic_init,
        direct_init=g.direct_init,
        smoothing=g.smoothing,
        direct_stabilization=g.direct_stabilization,
        semantic_stabilization=g.semantic_stabilization,
        edge_stabilization=g.edge_stabilization,
    )
    return out


def _coefficients(text):
    from vj.engine.diffusion.prompt_edits import parse_text

    return [c for group in parse_text(text).groups for c, _ in group]


@pytest.mark.parametrize("knob", [1.0, -1.0, math.inf, -math.inf, math.nan])
def test_every_value_that_reaches_the_engine_is_finite_and_in_its_range(tmp_path, knob):
    notes = []
    director = Director(_wild(tmp_path), notify=notes.append)
    for t in (0.0, 1.25):  # a scene, then the middle of a scene change (both scenes' prompts)
        request = director.request(0, t, {"knob": knob})
        numbers = _numbers(request)
        assert all(math.isfinite(v) for v in numbers.values()), numbers
        low, high, _ = RANGES["weight"]
        prompts = request.prompts + (request.previous_prompts or ())
        assert all(low <= w <= high for _, w in prompts)
        for key, kind in KEY_KINDS.items():
            low, high, _ = RANGES[kind]
            value = {
                "rotate_2d": request.motion.rotate,
                "zoom_x_2d": request.motion.zoom_x,
                "zoom_y_2d": request.motion.zoom_y,
                "direct_init_weight": request.init_weight,
                "clip_guidance_scale": request.guidance.scale,
            }.get(key, getattr(request.motion, key, None))
            assert value is None or low <= value <= high, (key, value)
        assert 0.01 <= request.strength <= 1.0
        coefficients = [c for text, _ in prompts if "{" in text for c in _coefficients(text)]
        assert coefficients and all(-100 <= c <= 100 for c in coefficients)
    if knob in (1.0, -1.0):  # finite but wild values are clamped and each place is said, once per text
        said = " ".join(notes)
        places = ["'tabby'", "'a photo of a cat on a sofa'", "zoom_x_2d", "rotate_2d", "smoothing_weight"]
        for place in places + ["clip_guidance_scale"] * (knob > 0):  # a negative scale is 0, as always
            assert place in said, (place, notes)
        assert director.hold.clamped > 0
    else:  # a non-finite input makes the expression fail: 0, nothing to clamp
        assert director.hold.clamped == 0


def test_a_wild_frame_renders_finite_and_not_black(tmp_path):
    from vj.show.engines import build_engines
    from vj.show.engines import engine_settings

    preset = _wild(tmp_path)
    factory = build_engines(preset, "cpu", "float32")
    engine = factory(engine_settings(preset))
    director = Director(preset)
    for frame, knob in enumerate((1.0, -1.0, math.inf, math.nan)):
        image = engine.render(director.request(frame, 0.0, {"knob": knob}))
        assert image.shape == (64, 64, 3) and image.std() > 0 and image.max() > 0, knob


def test_token_edit_coefficients_are_held_before_they_reach_the_conditioning(tmp_path):
    import torch
    from vj.engine.diffusion.frames import FrameEngine
    from vj.engine.diffusion.models import load_components
    from vj.show.engines import engine_settings

    preset = load_preset(
        write(
            tmp_path,
            'scenes: "a {cat + 1000*knob*tabby}:1"\nmodel: tiny\nwidth: 64\nheight: 64\ncontrols:\n  - {name: knob}\n',
        )
    )
    engine = FrameEngine(load_components("tiny", device="cpu"), engine_settings(preset))
    request = Director(preset).request(0, 0.0, {"knob": 1e300})
    assert _coefficients(request.prompts[0][0]) == [1.0, 100.0]
    assert torch.isfinite(engine.conditioning(request)).all()


def test_guard_clamps_reports_with_a_stable_text_and_logs_at_most_once_a_second(caplog):
    now = [0.0]
    notes = []
    hold = ValueGuard(notify=notes.append, clock=lambda: now[0])
    assert hold("coefficient", "'tabby'", 3.5) == 3.5 and notes == []
    assert hold("coefficient", "'tabby'", 1e308) == 100.0
    assert hold("coefficient", "'tabby'", -math.inf) == -100.0
    assert hold("coefficient", "'tabby'", math.nan) == 0.0
    assert hold("guidance scale", "clip_guidance_scale", math.nan) == 0.0
    assert len(set(notes[:3])) == 1 and "'tabby'" in notes[0] and "-100..100" in notes[0]
    assert len([r for r in caplog.records if "out of range" in r.message]) == 1
    now[0] = 1.5
    hold("zoom", "zoom_x_2d", 1e9)
    assert len([r for r in caplog.records if "out of range" in r.message]) == 2 and hold.clamped == 5


@pytest.mark.parametrize(
    "text, message",
    [
        ('scenes: "a {cat + 1e308*tabby}:1"', "coefficient of 'tabby'"),
        ('scenes: "a {cat - 101*tabby}:1"', "-101 is outside the token-edit coefficient range -100..100"),
        ("scenes: a cat:1e7", "weight 1e+07 is outside the prompt weight range"),
        ("scenes: a cat\nzoom_x_2d: 1e9", "zoom_x_2d"),
        ("scenes: a cat\nclip_guidance_scale: 5000", "clip_guidance_scale range 0..1000"),
        ("scenes: a cat\nsmoothing_weight: -1e300", "smoothing_weight"),
    ],
)
def test_constants_outside_their_range_are_refused_by_check(tmp_path, text, message):
    found = problems(write(tmp_path, text + "\n"))
    assert any(message in p for p in found), found


def test_expressions_that_may_leave_the_range_are_accepted(tmp_path):
    assert load_preset(
        write(
            tmp_path,
            'scenes: "a {cat + 1000*knob*tabby}:1e9*fLo"\nzoom_x_2d: 1e9*fLo\n'
            "controls:\n  - {name: knob}\n"
            "input_audio_filters:\n  - {variable_name: fLo, f_center: 100, f_width: 50}\n",
        )
    )


def test_a_live_show_says_on_its_hud_which_value_was_held(tmp_path):
    from vj.live.controls.actions import SetControl
    from vj.live.controls.controls import Controls
    from vj.live.state import ShowState

    preset = load_preset(
        write(
            tmp_path,
            'scenes: "a {cat + 1000*knob*tabby}:1"\nmodel: tiny\ncontrols:\n  - {name: knob, range: [0, 10]}\n',
        ),
        {"model": "tiny"},
    )
    state = ShowState(preset, Controls(preset.controls))
    state.request(0.0, {})
    assert state.warnings.current() == []
    state.apply(SetControl("knob", 10.0), 0.0, {})
    state.request(0.1, {})
    assert any("'tabby'" in w and "-100..100" in w for w in state.warnings.current()), state.warnings.current()


def test_a_nan_guidance_weight_reaches_the_engine_as_0(tmp_path):
    import dataclasses

    from vj.show.guidance_inputs import guidance_request

    preset = dataclasses.replace(
        _wild(tmp_path), smoothing_weight=lambda env: math.nan, clip_guidance_scale=lambda env: math.nan
    )
    request = guidance_request(preset, 0, {"knob": 0.0}, ValueGuard())
    assert request.smoothing == 0.0 and request.scale == 0.0
