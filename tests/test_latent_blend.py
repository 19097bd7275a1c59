"""`transition_mode: latent_blend` end to end on the tiny model: transitions keyed, computed, cached on disk and
found again, played as the stream's guide by the Director, computed ahead by the show's worker, rendered to MP4
and prerendered by `vj prerender`."""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import problems
from vj.engine.diffusion.frames import EngineSettings, FrameEngine, FrameRequest
from vj.engine.transitions.cache import TransitionCache
from vj.engine.transitions.plans import CROSSFEED, TURBO_CROSSFEED, Crossfeed
from vj.show.director import Director
from vj.config.loading import load_preset
from vj.show.timeline import ScenePosition
from vj.show.blends import Transitions, TransitionWorker, all_pairs, guide_weight, scene_changes, tree_crossfeed

PRESET = """\
scenes: a red fox:1 | sparks:2*glow || a blue whale:1 || a green tree:2
controls:
  - {name: glow, default: 0.5}
scene_duration: 2
transition_time: 1
transition_mode: latent_blend
transition_quality: lowest
transition_steps: 2
width: 64
height: 64
frames_per_second: 8
seed: 3
"""
WAIT = 120.0  # the worker computes a tiny tree in well under a second; generous for a loaded machine


@pytest.fixture
def preset_file(tmp_path):
    path = tmp_path / "blend.yaml"
    path.write_text(PRESET)
    return path


def count_unet_calls(monkeypatch, components):
    calls = []
    real = components.unet.forward
    monkeypatch.setattr(components.unet, "forward", lambda *a, **k: calls.append(1) or real(*a, **k))
    return calls


def test_leaves_start_at_scene_a_at_rest_and_end_at_scene_b(tiny, preset_file, tmp_path):
    preset = load_preset(preset_file, {"model": "tiny"})
    transitions = Transitions(tiny, preset, TransitionCache(tmp_path / "cache"))
    leaves = transitions.compute(0, 1)
    assert leaves.shape == (5, 64, 64, 3) and leaves.dtype == np.uint8  # `lowest`: 5 leaves
    engine = FrameEngine(tiny, EngineSettings(width=64, height=64, steps=2))
    for leaf, prompts in ((leaves[0], (("a red fox", 1.0), ("sparks", 1.0))), (leaves[-1], (("a blue whale", 1.0),))):
        engine.reset()
        np.testing.assert_array_equal(leaf, engine.render(FrameRequest(0, prompts, seed=3)))  # plain generation


def test_the_disk_cache_serves_a_second_run_and_keys_follow_the_settings(tiny, preset_file, tmp_path, monkeypatch):
    preset = load_preset(preset_file, {"model": "tiny"})
    first = Transitions(tiny, preset, TransitionCache(tmp_path / "cache"))
    leaves = first.compute(0, 1)
    calls = count_unet_calls(monkeypatch, tiny)
    again = Transitions(tiny, preset, TransitionCache(tmp_path / "cache"))  # a new process, the same folder
    assert again.ready(0, 1) and not again.ready(1, 2)
    np.testing.assert_array_equal(again.compute(0, 1), leaves)
    assert calls == [] and again.cache.disk_hits >= 1
    keys = {first.key(0, 1), first.key(1, 0), first.key(1, 2)}
    for change in ("seed: 3", "transition_quality: lowest", "width: 64", "a blue whale"):
        other = {
            "seed: 3": "seed: 4",
            "transition_quality: lowest": "transition_quality: low",
            "width: 64": "width: 72",
            "a blue whale": "a grey whale",
        }[change]
        preset_file.write_text(PRESET.replace(change, other))
        keys.add(Transitions(tiny, load_preset(preset_file, {"model": "tiny"}), first.cache).key(0, 1))
    assert len(keys) == 7


def test_the_crossfeed_keys_reach_the_tree_and_its_cache_key(tiny, preset_file, tmp_path):
    """Parental crossfeed from the preset (latent blending's defaults where not given: 0.3 / 0.6 / 0.9, and
    1 / 1 / 1 for turbo models); a transition cached with other crossfeed settings is not reused."""
    cache = TransitionCache(tmp_path / "cache")
    preset = load_preset(preset_file, {"model": "tiny"})
    assert tree_crossfeed(preset, "tiny") == CROSSFEED
    assert tree_crossfeed(preset, "stabilityai/sd-turbo") == TURBO_CROSSFEED
    text = PRESET.replace("transition_steps: 2", "transition_steps: 3\ntransition_depth: 0.3")  # injections 1, 2
    leaves, keys = [], set()
    for power in (0.0, 1.0, 0.5):
        preset_file.write_text(f"{text}transition_crossfeed_power: {power}\ntransition_crossfeed_range: 1\n")
        transitions = Transitions(tiny, load_preset(preset_file, {"model": "tiny"}), cache)
        assert transitions._setup.crossfeed == Crossfeed(power, 1.0, 0.9)
        keys.add(transitions.key(0, 1))
        leaves.append(transitions.compute(0, 1))
    assert len(keys) == 3 and not np.array_equal(leaves[0], leaves[1])
    preset_file.write_text(f"{text}transition_crossfeed_decay: 1.5\n")
    assert any("transition_crossfeed_decay" in p and "between 0 and 1" in p for p in problems(preset_file))


def test_a_corrupt_entry_is_recomputed_and_never_shown(tiny, preset_file, tmp_path, monkeypatch):
    preset = load_preset(preset_file, {"model": "tiny"})
    first = Transitions(tiny, preset, TransitionCache(tmp_path / "cache"))
    leaves = first.compute(0, 1)
    entry = tmp_path / "cache" / f"{first.key(0, 1)}.npz"
    entry.write_bytes(entry.read_bytes()[: entry.stat().st_size // 2])  # truncated by a crash
    calls = count_unet_calls(monkeypatch, tiny)
    cache = TransitionCache(tmp_path / "cache")
    again = Transitions(tiny, preset, cache)
    assert again.guide(0, 1, 0.5) is None and cache.corrupt == 1  # not shown: the show crossfades
    np.testing.assert_array_equal(again.compute(0, 1), leaves)  # recomputed, identical
    assert calls and entry.is_file()


def test_the_director_guides_the_stream_only_inside_a_ready_transition(tiny, preset_file, tmp_path):
    preset = load_preset(preset_file, {"model": "tiny"})
    transitions = Transitions(tiny, preset, TransitionCache(False))
    transitions.compute(0, 1)
    director = Director(preset, transitions=transitions)
    for k, mix in enumerate((0.0, 0.25)):
        request = director.request(k, mix, {}, ScenePosition(1, 0, mix))
        assert request.guide.shape == (64, 64, 3) and director.blending == "latent blend"
        assert request.guide_weight == pytest.approx(0.8 * math.sin(math.pi * mix) ** 2)  # 0 at the seam
    assert request.previous_prompts is not None and request.mix == 0.25  # the crossfade goes on under it
    for position in (ScenePosition(1), ScenePosition(1, 0, 1.0)):
        request = director.request(3, 0.7, {}, position)
        assert request.guide is None and request.guide_weight == 0.0 and director.blending is None
    assert guide_weight(preset, 0.0) == 0.0 and guide_weight(preset, 1.0) == pytest.approx(0.0)


def test_a_blend_ready_mid_transition_fades_in_instead_of_jumping(tiny, preset_file):
    from vj.show.director import JOIN

    preset = load_preset(preset_file, {"model": "tiny"})
    transitions = Transitions(tiny, preset, TransitionCache(False))
    director = Director(preset, transitions=transitions)
    request = director.request(0, 0.0, {}, ScenePosition(1, 0, 0.3))
    assert request.guide is None and director.blending == "crossfade (latent blend not ready)"
    transitions.compute(0, 1)  # the worker finishes mid-transition
    weights = [
        director.request(k, 0.0, {}, ScenePosition(1, 0, mix)).guide_weight
        for k, mix in enumerate((0.4, 0.4 + JOIN / 2, 0.4 + JOIN), start=1)
    ]
    full = [guide_weight(preset, mix) for mix in (0.4, 0.4 + JOIN / 2, 0.4 + JOIN)]
    assert weights == pytest.approx([0.0, full[1] / 2, full[2]])
    director.request(9, 0.0, {}, ScenePosition(1))  # over; the next change starts afresh
    assert director.request(10, 0.0, {}, ScenePosition(1, 0, 0.1)).guide_weight == pytest.approx(
        guide_weight(preset, 0.1)
    )


def test_the_engine_pulls_its_input_toward_the_guide(tiny):
    engine = FrameEngine(tiny, EngineSettings(width=64, height=64, steps=1))
    engine.render(FrameRequest(0, (("a red fox", 1.0),), seed=1))
    start = engine.previous
    plain = engine.render(FrameRequest(1, (("a red fox", 1.0),), seed=1))
    engine.previous = start
    white = np.full((64, 64, 3), 255.0, np.float32)
    guided = engine.render(FrameRequest(1, (("a red fox", 1.0),), seed=1, guide=white, guide_weight=1.0))
    engine.previous = start
    half = engine.render(FrameRequest(1, (("a red fox", 1.0),), seed=1, guide=white[:32, :32], guide_weight=0.5))
    assert not np.array_equal(plain, guided) and not np.array_equal(plain, half)  # a smaller guide is resized


def test_pairs_of_a_render_and_of_prerender(preset_file):
    preset = load_preset(preset_file, {"model": "tiny"})
    assert scene_changes(preset) == [(0, 1), (1, 2)]
    assert scene_changes(preset, start=2.5) == [(0, 1), (1, 2)]  # scene 2 fades in over 2..3 s
    assert scene_changes(preset, start=3.0) == [(1, 2)]  # ... and is in full at 3 s
    assert scene_changes(preset, start=0.0, duration=1.5) == []
    assert all_pairs(preset) == [(0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1)]


def test_the_worker_computes_what_may_come_next(tiny, preset_file):
    from vj.live.controls.controls import Controls
    from vj.live.state import ShowState

    preset = load_preset(preset_file, {"model": "tiny"})
    transitions = Transitions(tiny, preset, TransitionCache(False))
    state = ShowState(preset, Controls(preset.controls), {"model": "tiny"}, transitions=transitions)
    state.scenes.queue(2)
    assert state.wanted_transitions() == [(0, 2), (0, 1)]  # the queued scene first, then next (= previous)
    worker = TransitionWorker(transitions)
    try:
        worker.want(state.wanted_transitions())
        assert worker.wait_idle(WAIT)
        assert transitions.ready(0, 2) and transitions.ready(0, 1) and worker.errors == 0
    finally:
        worker.close()
    preset_file.write_text(PRESET.replace("transition_mode: latent_blend", "transition_mode: slerp"))
    assert state.reload() is not None and state.wanted_transitions() == []


def test_a_failing_transition_is_counted_and_the_worker_goes_on(tiny, preset_file, caplog):
    preset = load_preset(preset_file, {"model": "tiny"})

    class Broken(Transitions):
        def compute(self, a, b):
            if (a, b) == (0, 1):
                raise RuntimeError("out of memory")
            return super().compute(a, b)

    transitions = Broken(tiny, preset, TransitionCache(False))
    worker = TransitionWorker(transitions)
    try:
        worker.want([(0, 1), (1, 2)])
        assert worker.wait_idle(WAIT)
    finally:
        worker.close()
    assert worker.errors == 1 and transitions.ready(1, 2) and not transitions.ready(0, 1)
    assert "latent-blend transition 1 -> 2 failed" in caplog.text


def run_vj(*args, cache):
    env = dict(os.environ, XDG_CACHE_HOME=str(cache))
    return subprocess.run([sys.executable, "-m", "vj", *args], env=env, capture_output=True, text=True, timeout=600)


def test_prerender_then_render_find_the_transitions_in_the_cache(preset_file, tmp_path):
    cache = tmp_path / "xdg"
    first = run_vj("prerender", str(preset_file), "--model", "tiny", cache=cache)
    assert first.returncode == 0, first.stderr
    assert "3 transitions: 3 computed, 0 already in the cache" in first.stdout  # each to the next, 3 -> 1 too
    assert len(list((cache / "vj" / "transitions").glob("*.npz"))) == 3
    second = run_vj("prerender", str(preset_file), "--model", "tiny", "--all-pairs", cache=cache)
    assert "6 transitions: 3 computed, 3 already in the cache" in second.stdout, second.stderr
    out = tmp_path / "blend.mp4"
    render = run_vj("render", str(preset_file), "--model", "tiny", "-o", str(out), cache=cache)
    assert render.returncode == 0, render.stderr
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-show_entries", "stream=nb_read_frames", "-of", "json", str(out)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert int(json.loads(probe.stdout)["streams"][0]["nb_read_frames"]) == 48  # 3 scenes x 2 s x 8 fps
