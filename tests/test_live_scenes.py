"""Live scene changes: triggers, queue, quantization to beat and bar, crossfade positions."""

import pytest

from vj.live.scene_triggers import LiveScenes, next_boundary
from vj.show.timeline import ScenePosition

LOCKED = {"bpm": 120.0, "beat_phase": 0.25, "bar_phase": 0.5, "beats_per_bar": 4}
UNLOCKED = {"bpm": 0.0, "beat_phase": 0.0, "bar_phase": 0.0}


def test_boundaries_follow_the_beat_and_bar_and_fall_back_to_now():
    assert next_boundary(10.0, "none", LOCKED) == 10.0
    assert next_boundary(10.0, "beat", LOCKED) == pytest.approx(10.375)  # 0.75 of a 0.5 s beat
    assert next_boundary(10.0, "bar", LOCKED) == pytest.approx(11.0)  # half of a 2 s bar
    assert next_boundary(10.0, "bar", UNLOCKED) == 10.0  # no tempo: at once


def test_jump_crossfades_over_the_transition_time():
    s = LiveScenes(3, transition_time=2.0)
    assert s.at(0.0) == ScenePosition(0)
    s.jump(2, 5.0, UNLOCKED)
    assert s.at(5.0) == ScenePosition(2, 0, 0.0)
    assert s.at(6.0) == ScenePosition(2, 0, 0.5)
    assert s.at(7.0) == ScenePosition(2)


def test_quantized_change_waits_for_its_bar():
    s = LiveScenes(3, transition_time=1.0, quantize="bar")
    s.jump(1, 10.0, LOCKED)
    s.update(10.9)
    assert s.at(10.9) == ScenePosition(0)
    s.update(11.0)
    assert s.at(11.5) == ScenePosition(1, 0, 0.5)


def test_next_previous_wrap_and_queue_overrides_next():
    s = LiveScenes(3, transition_time=0.0)
    s.previous_scene(1.0, UNLOCKED)
    assert s.current == 2
    s.next(2.0, UNLOCKED)
    assert s.current == 0
    s.queue(2)
    s.next(3.0, UNLOCKED)
    assert s.current == 2 and s.queued is None
    s.next(4.0, UNLOCKED)
    assert s.current == 0


def test_resize_keeps_indexes_in_range():
    s = LiveScenes(5, transition_time=1.0)
    s.jump(4, 0.0, UNLOCKED)
    s.resize(3)
    assert s.current == 1 and s.previous == 0
