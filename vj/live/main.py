"""`vj live PRESET`: builds the show's parts from the command line and runs it until quit."""

import logging
import signal
import time

from vj.audio import AudioAnalyzer
from vj.audio.sources import SilenceSource
from vj.control.actions import ActionBus, Quit
from vj.control.controls import Controls
from vj.live.show import EngineLoop, Show
from vj.live.slot import FrameSlot
from vj.live.state import ShowState
from vj.preset import load_preset

log = logging.getLogger(__name__)


class ShowClock:
    """Seconds since the show started (time.monotonic): the live show's only difference from a render's i/fps."""

    def __init__(self):
        self.start = time.monotonic()

    def __call__(self):
        return time.monotonic() - self.start


class SilentAudio:
    """The audio side of a show without audio input: silence analysed on demand (a fixed `bpm` still beats)."""

    def __init__(self, preset, clock):
        self._clock = clock
        self.use_preset(preset)
        self.warning = None

    def use_preset(self, preset):
        self.analyzer = AudioAnalyzer.for_preset(SilenceSource(), preset)

    def snapshot(self):
        t = self._clock()
        return self.analyzer.advance_to(t), t

    def close(self):
        pass


class LiveAudio:
    """A LiveAnalysis and its source as the show sees them: snapshots, a warning, tap/downbeat, one close()."""

    def __init__(self, source, preset):
        from vj.audio.live import LiveAnalysis
        self.source = source
        self.analysis = LiveAnalysis.for_preset(source, preset)
        self.preset = preset

    def snapshot(self):
        return tuple(self.analysis.snapshot())

    @property
    def warning(self):
        return self.analysis.warning

    # The beat tracker lives on the analysis thread; a tap changes a few of its numbers between two blocks.
    def audio_time(self):
        return self.analysis.snapshot().audio_time

    def tap(self, t):
        self.analysis.analyzer.beats.tap(t)

    def downbeat(self, t):
        self.analysis.analyzer.beats.downbeat(t)

    def use_preset(self, preset):
        old = self.preset
        self.preset = preset
        if (old.input_audio_filters, old.bpm, old.tempo_range, old.beats_per_bar, old.beat_decay) != (
                preset.input_audio_filters, preset.bpm, preset.tempo_range, preset.beats_per_bar, preset.beat_decay):
            log.warning("audio filter and beat changes take effect when the show restarts")

    def close(self):
        self.analysis.close()
        self.source.close()


def open_audio(args, preset, clock):
    """The live audio analysis: a device, a rehearsal file, or silence (`--audio-device none`)."""
    if args.audio_device == "none" and not args.audio:
        return SilentAudio(preset, clock)
    from vj.audio.live import FilePlayback, LiveInput
    if args.audio:
        source = FilePlayback(args.audio, playback=not args.no_playback, device=args.audio_output)
    else:
        source = LiveInput(device=args.audio_device, sample_rate=args.sample_rate, channels=args.channels,
                           blocksize=args.blocksize, latency=args.latency)
    return LiveAudio(source, preset)


def main(args):
    overrides = {"model": args.model, "vae": args.vae, "width": args.width, "height": args.height}
    preset = load_preset(args.preset, overrides)
    from engine.frames import FrameEngine
    from engine.models import compile_components, load_components
    from vj.render import engine_settings, load_image
    components = load_components(preset.model, preset.vae, args.device, args.dtype)
    if args.compile:
        compile_components(components)
    init = load_image(preset.init_image, preset.width, preset.height) if preset.init_image else None

    def make_engine(settings):
        start = init if init is None or init.shape[:2] == (settings.height, settings.width) else None
        return FrameEngine(components, settings, start)

    from vj.live.display import Display
    display = Display(size=(preset.width, preset.height), fullscreen=not args.windowed, display_index=args.display,
                      blend=args.blend)
    clock = ShowClock()
    bus = ActionBus()
    controls = Controls(preset.controls)
    parts = []
    try:
        audio = open_audio(args, preset, clock)
        parts.append(audio)
        state = ShowState(preset, controls, overrides)
        loop = EngineLoop(state, make_engine, engine_settings(preset), audio, FrameSlot(), clock)
        midi = None
        if args.midi:
            from vj.control.midi import MidiInput, MidiMap
            midi = MidiInput(args.midi, MidiMap.for_preset(preset), controls, bus, clock=clock)
            parts.append(midi)
            loop.on_reload.append(lambda p: midi.set_map(MidiMap.for_preset(p)))
        show = Show(loop, display, bus, clock, hud=not args.no_hud, stats_path=args.stats, midi=midi,
                    beats=audio if isinstance(audio, LiveAudio) else None, duration=args.duration)
        if args.osc != "off":
            from vj.control.osc import OscInput, parse_endpoint
            host, port = parse_endpoint(args.osc)
            parts.append(OscInput(host, port, controls=controls, bus=bus, scene_count=lambda: state.scenes.count,
                                  status=show.record, allow=args.osc_allow))
        signal.signal(signal.SIGTERM, lambda *_: bus.put(Quit(), "signal"))
        return show.run()
    finally:
        for part in reversed(parts):
            part.close()
        display.close()
