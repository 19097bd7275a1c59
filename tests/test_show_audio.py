"""The show's audio side without a sound card: the analysis thread applies taps, downbeats and reloads between
blocks, snapshots carry the time their audio arrived, and `tempo_source: link` takes the musical variables from
Link (a disabled clock: nothing reaches a real session on the network)."""

import importlib.util
import queue
import threading
import time

import numpy as np
import pytest

import vj.live.audio_feed as show_audio
from vj.audio.analysis import AudioAnalyzer
from vj.config.bands import Band
from vj.audio.link import LinkClock
from vj.audio.live_analysis import LiveAnalysis
from vj.live.audio_feed import LiveAudio, SilentAudio
from vj.config.loading import load_preset

RATE = 48000
WAIT = 10.0

PRESET = """\
scenes: a red square:1
input_audio_filters:
  - {variable_name: fLo, f_center: 100, f_width: 50, order: 3}
{extra}
"""


class BlockSource:
    """A source the test feeds block by block, each with the monotonic time it 'arrived', as a sound card would."""

    sample_rate = RATE

    def __init__(self):
        self._blocks = queue.Queue()
        self.arrival = None

    def push(self, block, arrival):
        self._blocks.put((np.asarray(block, np.float32), arrival))

    def read(self, frames, timeout=0.0):
        try:
            block, self.arrival = self._blocks.get(timeout=timeout)
        except queue.Empty:
            return np.zeros(0, np.float32)
        return block

    def close(self):
        pass


def preset_file(tmp_path, extra="", name="show.yaml"):
    path = tmp_path / name
    path.write_text(PRESET.replace("{extra}", extra))
    return path


def fed(analysis, source, seconds=0.1, arrival=None):
    """Push `seconds` of silence and wait until the analysis has published it."""
    target = analysis.snapshot().audio_time + seconds
    source.push(np.zeros(int(seconds * RATE)), time.monotonic() if arrival is None else arrival)
    snap = analysis.wait_for(lambda s: s.audio_time >= target - 1e-9, WAIT)
    assert snap is not None, "the analysis thread did not publish the block"
    return snap


@pytest.fixture
def analysis():
    source = BlockSource()
    live = LiveAnalysis.for_bands(source, [Band("fLo", 100, 50)])
    yield live, source
    live.close()


def test_snapshots_carry_the_arrival_time_of_their_newest_audio(analysis):
    live, source = analysis
    arrival = time.monotonic() - 0.25
    snap = fed(live, source, arrival=arrival)
    assert snap.heard_at == arrival and snap.audio_time == pytest.approx(0.1)


def test_taps_are_applied_by_the_analysis_thread_at_their_audio_time(analysis):
    live, source = analysis
    fed(live, source, 1.0)
    now = time.monotonic()
    for k in range(4):  # taps 0.4 s apart: 150 BPM
        live.tap(now - 1.2 + 0.4 * k)
    snap = fed(live, source)
    assert snap.values["bpm"] == pytest.approx(150.0)
    tracker = live.analyzer.beats
    # the last tap was at the audio time of `now`: 0.1 s before the end of the block pushed after it
    assert tracker.next_beat - tracker.period == pytest.approx(tracker.time - 0.1, abs=0.01)


def test_replace_swaps_the_analyzer_between_blocks_and_can_keep_the_beat(analysis):
    live, source = analysis
    fed(live, source, 1.0)
    now = time.monotonic()
    live.tap(now - 0.5)
    live.tap(now)
    fed(live, source)
    tracker = live.analyzer.beats
    live.replace(AudioAnalyzer(source, [Band("fMid", 1000, 200)]), keep_beats=True)
    snap = fed(live, source)
    assert "fMid" in snap.values and "fLo" not in snap.values
    assert live.analyzer.beats is tracker and snap.values["bpm"] == pytest.approx(120.0)
    live.replace(AudioAnalyzer(source, [Band("fMid", 1000, 200)]))
    fed(live, source)
    assert live.analyzer.beats is not tracker


def test_an_analyzer_at_another_rate_is_refused(analysis):
    live, _ = analysis

    class Other(BlockSource):
        sample_rate = 44100

    with pytest.raises(ValueError, match="44100 Hz"):
        live.replace(AudioAnalyzer(Other(), [Band("fLo", 100, 50)]))


def test_a_failing_tap_is_logged_and_the_analysis_goes_on(analysis, caplog):
    live, source = analysis
    live._calls.append(lambda: 1 / 0)
    snap = fed(live, source)
    assert snap is not None and live.warning == "audio analysis error (see the log)"
    assert "ZeroDivisionError" in caplog.text


class ShowClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_silent_audio_taps_on_the_engine_thread_and_reloads_with_new_filters(tmp_path):
    preset = load_preset(preset_file(tmp_path), {"model": "tiny"})
    clock = ShowClock()
    audio = SilentAudio(preset, clock)
    clock.t = 2.0
    audio.snapshot()
    now = time.monotonic()
    audio.tap(now - 0.5)
    audio.tap(now)
    assert audio.analyzer.beats.fixed_period is None  # queued, not applied on this (the main) thread
    clock.t = 2.1
    values, heard_at = audio.snapshot()
    # taps 0.5 s apart: 120 bpm, give or take the microseconds time.monotonic() moves between the two tap() calls
    # while this test's show clock stands still (a show's clock moves with it)
    assert values["bpm"] == pytest.approx(120.0, abs=0.5) and heard_at >= now
    reloaded = load_preset(
        preset_file(tmp_path, "  - {variable_name: fHi, f_center: 8000, f_width: 2000}"), {"model": "tiny"}
    )
    audio.use_preset(reloaded)
    clock.t = 2.5
    values, _ = audio.snapshot()
    assert "fHi" in values and "fLo" in values


def test_live_audio_reload_swaps_only_when_the_analysis_changed(tmp_path):
    source = BlockSource()
    preset = load_preset(preset_file(tmp_path), {"model": "tiny"})
    audio = LiveAudio(source, preset)
    try:
        fed(audio.analysis, source)
        first = audio.analysis.analyzer
        audio.use_preset(load_preset(preset_file(tmp_path, "transition_time: 3"), {"model": "tiny"}))
        fed(audio.analysis, source)
        assert audio.analysis.analyzer is first  # nothing the analysis uses changed
        audio.use_preset(
            load_preset(
                preset_file(tmp_path, "  - {variable_name: fHi, f_center: 8000, f_width: 2000}"), {"model": "tiny"}
            )
        )
        snap = fed(audio.analysis, source)
        assert "fHi" in snap.values and audio.analysis.analyzer.beats is first.beats
        audio.use_preset(load_preset(preset_file(tmp_path, "bpm: 90"), {"model": "tiny"}))
        snap = fed(audio.analysis, source)
        assert snap.values["bpm"] == pytest.approx(90.0) and audio.analysis.analyzer.beats is not first.beats
    finally:
        audio.close()


needs_aalink = pytest.mark.skipif(importlib.util.find_spec("aalink") is None, reason="aalink is not installed")


@pytest.fixture
def offline_link(monkeypatch):
    """Link clocks that stay off the network (the show's code path is otherwise the real one)."""
    made = []

    def make(**kwargs):
        clock = LinkClock(enable=False, **kwargs)
        made.append(clock)
        return clock

    monkeypatch.setattr(show_audio, "LinkClock", make)
    return made


@needs_aalink
def test_link_gives_the_musical_variables_and_taps_set_its_tempo(tmp_path, offline_link):
    preset = load_preset(preset_file(tmp_path, "tempo_source: link\nbpm: 100\nbeats_per_bar: 3"), {"model": "tiny"})
    clock = ShowClock()
    audio = SilentAudio(preset, clock)
    try:
        values, _ = audio.snapshot()
        assert values["bpm"] == pytest.approx(100.0) and "fLo" in values
        assert offline_link[0].beats_per_bar == 3
        now = time.monotonic()
        for k in range(3):
            audio.tap(now - 0.8 + 0.4 * k)  # 150 BPM, proposed to the session
        assert offline_link[0].tempo == pytest.approx(150.0)
        assert audio.snapshot()[0]["bpm"] == pytest.approx(150.0)
        audio.downbeat(now)
        assert "Link session's" in audio.warning
        audio.use_preset(load_preset(preset_file(tmp_path, "bpm: 90"), {"model": "tiny"}))
        clock.t = 0.1
        assert audio.link is None and audio.snapshot()[0]["bpm"] == pytest.approx(90.0)
        with pytest.raises(Exception, match="closed"):
            offline_link[0].tempo  # left the session
    finally:
        audio.close()


def test_link_failing_at_a_reload_is_a_warning_and_the_audio_keeps_the_tempo(tmp_path, monkeypatch):
    from vj.audio.link import LinkError

    def broken(**kwargs):
        raise LinkError("tempo_source: link needs the aalink package")

    monkeypatch.setattr(show_audio, "LinkClock", broken)
    clock = ShowClock()
    audio = SilentAudio(load_preset(preset_file(tmp_path, "bpm: 90"), {"model": "tiny"}), clock)
    audio.use_preset(load_preset(preset_file(tmp_path, "bpm: 90\ntempo_source: link"), {"model": "tiny"}))
    assert audio.link is None and "the tempo comes from the audio" in audio.warning
    clock.t = 0.1
    assert audio.snapshot()[0]["bpm"] == pytest.approx(90.0)


def test_snapshot_and_tap_from_two_threads_never_race(tmp_path):
    """The main thread taps while the engine thread takes snapshots: every tap lands, nothing raises."""
    preset = load_preset(preset_file(tmp_path), {"model": "tiny"})
    clock = ShowClock()
    audio = SilentAudio(preset, clock)
    errors = []
    done = threading.Event()

    def engine():
        try:
            while not done.is_set():
                clock.t += 0.01
                audio.snapshot()
        except Exception as exc:  # the test's report: any exception fails it below
            errors.append(exc)

    thread = threading.Thread(target=engine)
    thread.start()
    now = time.monotonic()
    for k in range(200):
        audio.tap(now + 0.001 * k)
    done.set()
    thread.join(WAIT)
    audio.snapshot()
    assert not errors and not audio._calls


def test_filters_that_do_not_fit_the_input_are_refused_at_a_reload(tmp_path):
    class Slow(BlockSource):
        sample_rate = 16000  # Nyquist 8 kHz

    source = Slow()
    audio = LiveAudio(source, load_preset(preset_file(tmp_path), {"model": "tiny"}))
    try:
        first = audio.analysis.analyzer
        audio.use_preset(
            load_preset(
                preset_file(tmp_path, "  - {variable_name: fHi, f_center: 9000, f_width: 2000}"), {"model": "tiny"}
            )
        )
        assert audio.analysis.analyzer is first
        assert audio.warning.startswith("audio filters refused: filter 'fHi': band 8000..10000 Hz")
    finally:
        audio.close()
