"""Live audio through real PortAudio streams on a private PulseAudio daemon with a null sink (tests/pulse.py).

A capture through ALSA's `pulse` device may take a while to deliver its first block (up to ~2 s on a fresh
daemon), so the tests wait on the analysis' snapshots (with timeouts) and assert on what was heard, not on timing.
"""

import re
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile

from conftest import ROOT, tone
from pulse import PulseDaemon, PulseError
from vj.audio import Band
from vj.audio.live_analysis import LiveAnalysis
from vj.audio.sources.devices import LiveAudioError, list_audio_devices, rescan_devices
from vj.audio.sources.file_playback import FilePlayback
from vj.audio.sources.live_input import LiveInput
from vj.audio.sources.ring import Ring

SR = 48000
TONE = 1000
BANDS = [Band("tone", TONE, 400, normalize="fixed"), Band("far", 150, 100, normalize="fixed")]
WAIT = 15.0  # generous: a slow machine may take seconds to start a capture; passing tests return much sooner


def input_names():
    return [device.name for device in list_audio_devices()[0]]


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    """One daemon for the module (a fresh one costs the ~2 s first-block delay again); tests may stop it."""
    daemon = PulseDaemon(tmp_path_factory.mktemp("pulse"))
    with pytest.MonkeyPatch.context() as env:
        for name, value in daemon.client_env.items():
            env.setenv(name, value)  # the ALSA pulse plugin inside this process connects through these
        try:
            try:
                daemon.start()
                rescan_devices()  # PortAudio listed the devices at import, perhaps before the daemon ran
                if "pulse" not in input_names():
                    raise PulseError(
                        "PortAudio lists no 'pulse' input: install the Debian package "
                        "libasound2-plugins (ALSA's pulse plugin)"
                    )
            except (PulseError, LiveAudioError) as exc:
                pytest.fail(f"live audio tests need a PulseAudio null sink and PortAudio: {exc}")
            yield daemon
        finally:
            daemon.stop()


@pytest.fixture
def pulse(daemon):
    """The module's daemon, running and playing nothing; whatever a test did to it is undone afterwards."""
    if not daemon.running:
        daemon.start()
    yield daemon
    daemon.resume()
    if not daemon.running:
        daemon.start()
    daemon.stop_tones()


def heard(snapshot):
    return snapshot.values["tone"] > 0.3


def silent(snapshot):
    return snapshot.values["tone"] < 0.01


def test_a_tone_played_into_the_sink_drives_its_band_only(pulse):
    pulse.play_tone(TONE)
    with (
        LiveInput("pulse", sample_rate=SR, latency="high") as source,
        LiveAnalysis.for_bands(source, BANDS) as analysis,
    ):
        start = analysis.wait_for(heard, WAIT)
        assert start is not None, f"the tone never reached the analysis (warning: {analysis.warning})"
        later = analysis.wait_for(lambda s: s.audio_time >= start.audio_time + 0.5, WAIT)
        assert later is not None
        assert later.values["tone"] == pytest.approx(0.5, abs=0.1)  # module-sine plays amplitude 0.5
        assert later.values["far"] < 0.01
        assert analysis.warning is None
        with pytest.raises(TypeError):
            later.values["tone"] = 0.0  # snapshots are immutable


@pytest.mark.parametrize("channel, present, absent", [(1, "far", "tone"), (2, "tone", "far")])
def test_only_the_chosen_channels_are_analysed(pulse, write_audio, channel, present, absent):
    # left: 150 Hz ('far'), right: TONE Hz ('tone'), played into the sink by paplay
    path = write_audio(np.stack([tone(150, 10.0), tone(TONE, 10.0)], axis=1), name="stereo.wav", subtype="FLOAT")
    with (
        LiveInput("pulse", sample_rate=SR, channels=[channel], latency="high") as source,
        LiveAnalysis.for_bands(source, BANDS) as analysis,
    ):
        player = subprocess.Popen(["paplay", str(path)], env=pulse.env)
        try:
            start = analysis.wait_for(lambda s: s.values[present] > 0.3, WAIT)
            assert start is not None, f"channel {channel}'s tone never reached the analysis"
            later = analysis.wait_for(lambda s: s.audio_time >= start.audio_time + 0.3, WAIT)
        finally:
            player.kill()
            player.wait()
    assert later.values[present] == pytest.approx(0.5, abs=0.1)
    assert later.values[absent] < 0.01


def test_a_killed_sound_server_decays_to_silence_warns_and_comes_back(pulse):
    pulse.play_tone(TONE)
    # a long stall timeout: only the stopped stream can tell that the input is lost
    with (
        LiveInput("pulse", sample_rate=SR, latency="high", stall_timeout=60) as source,
        LiveAnalysis.for_bands(source, BANDS) as analysis,
    ):
        assert analysis.wait_for(heard, WAIT) is not None
        pulse.stop()
        lost = analysis.wait_for(lambda s: silent(s) and source.warning is not None, WAIT)
        assert lost is not None, f"values did not decay after the server died: {analysis.snapshot()}"
        assert re.fullmatch(r"audio input \d+ 'pulse' lost \(stream stopped\); retrying", source.warning)
        assert analysis.warning == source.warning
        rescan_devices()  # as if the device list changed while it was gone: the reopening must look again
        assert "pulse" not in input_names()
        pulse.start()
        pulse.play_tone(TONE)
        back = analysis.wait_for(lambda s: heard(s) and source.warning is None, WAIT)
        assert back is not None, f"the input did not come back (warning: {source.warning})"
        assert back.audio_time > lost.audio_time


def test_a_hung_sound_server_counts_as_lost_and_comes_back(pulse):
    pulse.play_tone(TONE)
    with (
        LiveInput("pulse", sample_rate=SR, latency="high", stall_timeout=1.0) as source,
        LiveAnalysis.for_bands(source, BANDS) as analysis,
    ):
        try:
            assert analysis.wait_for(heard, WAIT) is not None
            pulse.pause()  # the stream stays "active" but delivers nothing
            lost = analysis.wait_for(lambda s: silent(s) and source.warning is not None, WAIT)
            assert lost is not None, f"values did not decay while the server hung: {analysis.snapshot()}"
            assert "lost (no audio for 1 s)" in source.warning
        finally:
            pulse.resume()  # before closing: PortAudio waits up to 30 s for a hung server
        back = analysis.wait_for(lambda s: heard(s) and source.warning is None, WAIT)
        assert back is not None, f"the input did not come back (warning: {source.warning})"


def test_a_device_that_appears_after_the_start_is_found(pulse):
    pulse.stop()
    rescan_devices()
    assert "pulse" not in input_names()
    pulse.start()
    pulse.play_tone(TONE)
    with LiveInput("pulse", sample_rate=SR) as source, LiveAnalysis.for_bands(source, BANDS) as analysis:
        assert analysis.wait_for(heard, WAIT) is not None


def test_a_bad_device_name_lists_the_inputs(pulse, write_audio):
    with pytest.raises(LiveAudioError) as error:
        LiveInput("Scarlett")
    message = str(error.value)
    assert message.startswith("no audio input matching 'Scarlett'; inputs: ")
    assert "'pulse'" in message and "\n" not in message
    with pytest.raises(LiveAudioError, match=r"^no audio output matching 'Scarlett'; outputs: .*'pulse'"):
        FilePlayback(write_audio(tone(TONE, 0.1)), device="Scarlett")


@pytest.mark.parametrize(
    "options, match",
    [
        (
            {"channels": [33]},
            r"^audio input \d+ 'pulse' has 32 channel\(s\); channels must be numbers 1\.\.32 "
            r"\(got \[33\]\)$",
        ),
        ({"latency": "medium"}, r"^audio latency 'medium' is not valid: 'low', 'high' or seconds > 0$"),
        (
            {"sample_rate": 10**7},
            r"^audio input \d+ 'pulse' cannot be opened at 10000000 Hz \(.*\); its default "
            r"rate is \d+ Hz; inputs: .*'pulse'",
        ),
    ],
)
def test_bad_input_options_give_one_line_errors(pulse, options, match):
    with pytest.raises(LiveAudioError, match=match) as error:
        LiveInput("pulse", **options)
    assert "\n" not in str(error.value)


def test_devices_are_listed(pulse):
    inputs, outputs = list_audio_devices()
    assert any(d.name == "pulse" and d.channels > 0 and d.default_samplerate > 0 for d in inputs)
    assert any(d.name == "pulse" for d in outputs)


def test_missing_portaudio_is_a_one_line_error():
    code = (
        "import ctypes.util\n"
        "ctypes.util.find_library = lambda name: None  # as on a machine without libportaudio2\n"
        "from vj.audio.sources.devices import LiveAudioError, list_audio_devices\n"
        "from vj.audio.sources.live_input import LiveInput\n"
        "for call in (list_audio_devices, LiveInput):\n"
        "    try:\n"
        "        call()\n"
        "    except LiveAudioError as exc:\n"
        "        print(exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    lines = done.stdout.splitlines()
    assert done.returncode == 0, done.stderr
    assert len(lines) == 2 and all("install the system package libportaudio2" in line for line in lines)


def test_paced_file_gives_exactly_its_samples_then_silence(write_audio):
    x = np.random.default_rng(1).uniform(-0.9, 0.9, SR // 4).astype(np.float32)
    path = write_audio(x, subtype="FLOAT")
    expected, _ = soundfile.read(str(path), dtype="float32")
    start = time.monotonic()
    got = []
    with FilePlayback(path, playback=False) as source:
        assert source.sample_rate == SR and source.warning is None
        while sum(map(len, got)) < len(x) + SR // 20:
            got.append(source.read(1000, timeout=0.5))
            # paced by the wall clock: never ahead of it
            assert sum(map(len, got)) <= (time.monotonic() - start) * SR + 1
    got = np.concatenate(got)
    np.testing.assert_array_equal(got[: len(x)], expected)
    assert not got[len(x) :].any()


class Recorder:
    """A source wrapper that keeps a copy of everything read (to compare with the file)."""

    def __init__(self, source):
        self.source, self.sample_rate, self.blocks = source, source.sample_rate, []

    def read(self, frames, timeout=0.0):
        block = self.source.read(frames, timeout)
        self.blocks.append(block.copy())
        return block


def test_played_file_is_heard_and_analysed_exactly(pulse, write_audio):
    seconds = 1.0
    x = np.stack([tone(TONE, seconds, amp=0.6), tone(TONE, seconds, amp=0.2)], axis=1)
    path = write_audio(x, name="rehearsal.wav", subtype="FLOAT")
    with (
        LiveInput("pulse", sample_rate=SR, latency="high") as sink_monitor,
        LiveAnalysis.for_bands(sink_monitor, BANDS) as heard_analysis,
    ):
        assert heard_analysis.wait_for(lambda s: s.audio_time > 0.1, WAIT) is not None
        assert silent(heard_analysis.snapshot())
        with FilePlayback(path, device="pulse") as playback:
            recorder = Recorder(playback)
            with LiveAnalysis.for_bands(recorder, BANDS) as played_analysis:
                assert heard_analysis.wait_for(heard, WAIT) is not None, (
                    f"the file was not heard on the sink (warning: {playback.warning})"
                )
                end = played_analysis.wait_for(lambda s: s.audio_time >= seconds + 0.2, WAIT)
                assert end is not None
                assert playback.warning is None
    samples = np.concatenate(recorder.blocks)
    expected = soundfile.read(str(path), dtype="float32", always_2d=True)[0].mean(axis=1, dtype=np.float32)
    np.testing.assert_array_equal(samples[: len(expected)], expected)
    assert not samples[len(expected) :].any()  # the file ended: silence since
    assert silent(end)


def test_analysis_survives_a_bad_block_and_closes_promptly(caplog):
    class Source:
        sample_rate = SR
        reads = 0

        def read(self, frames, timeout=0.0):
            self.reads += 1
            if self.reads == 3:
                return np.zeros((frames, 2, 2), np.float32)  # a block the filter bank cannot take
            return tone(TONE, 0.01)

    analysis = LiveAnalysis.for_bands(Source(), BANDS)
    try:
        assert analysis.wait_for(lambda s: s.audio_time > 0.5 and heard(s), WAIT) is not None
        assert any("audio analysis blocks dropped" in r.getMessage() for r in caplog.records)
    finally:
        started = time.monotonic()
        analysis.close()
        assert time.monotonic() - started < 0.5


def test_ring_keeps_order_across_the_wrap_and_counts_what_does_not_fit():
    ring = Ring(10, 2)
    data = np.arange(40, dtype=np.float32).reshape(20, 2)
    ring.write(data[:7])
    out = np.empty((5, 2), np.float32)
    assert ring.read_into(out) == 5
    np.testing.assert_array_equal(out, data[:5])
    ring.write(data[7:20])  # 2 left + 13 new > 10: 5 do not fit
    assert ring.dropped == 5 and ring.available == 10
    out = np.empty((12, 2), np.float32)
    assert ring.read_into(out) == 10
    np.testing.assert_array_equal(out[:10], data[5:15])
