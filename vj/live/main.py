"""`vj live PRESET`: builds the show's parts from the command line and runs it until quit."""

import contextlib
import signal
import time
from pathlib import Path

from vj.live.controls.actions import ActionBus, Quit
from vj.live.controls.controls import Controls
from vj.live.audio_feed import open_audio
from vj.live.keys import start_line
from vj.live.loop import EngineLoop, Show
from vj.live.slot import FrameSlot
from vj.live.state import ShowState
from vj.config.loading import load_preset_text, read_preset_text


class ShowClock:
    """Seconds since the show started (time.monotonic): the live show's only difference from a render's i/fps."""

    def __init__(self):
        self.start = time.monotonic()

    def __call__(self):
        return time.monotonic() - self.start


def open_display(args, preset, clock):
    """The show's window, or with --headless none (the outputs take the frames)."""
    if args.headless:
        from vj.live.headless import Headless

        return Headless()
    from vj.live.display import Display

    size = (preset.width, preset.height)
    return Display(size=size, fullscreen=not args.windowed, display_index=args.display, blend=args.blend, clock=clock)


def open_outputs(targets, preset, stack):
    """The --out outputs, each closed with the show."""
    if not targets:
        return []
    from vj.video.outputs.targets import open_output

    outputs = []
    for target in targets:
        outputs.append(open_output(target, preset.width, preset.height, preset.frames_per_second))
        stack.callback(outputs[-1].close)
    return outputs


def build(args, stack):
    """The show `vj live ARGS` runs, with every part it opens registered on `stack` (a contextlib.ExitStack) to
    close in reverse order. Benchmarks build the same show this way and probe it."""
    overrides = {"model": args.model, "vae": args.vae, "width": args.width, "height": args.height}
    if args.audio:  # the rehearsal file replaces the preset's input_audio (a shared preset's track may be missing)
        overrides["input_audio"] = str(Path(args.audio).expanduser().absolute())
    text = read_preset_text(args.preset)  # parsed as read, and kept as the recording's first version
    preset = load_preset_text(text, args.preset, overrides, strict=args.strict)
    from vj.show.session import ShowSession

    session = ShowSession.open(preset, args.device, args.dtype, args.compile, video_in=args.video_in, live=True)
    stack.callback(session.close)
    make_engine = session.engines
    outputs = open_outputs(args.out, preset, stack)
    clock = ShowClock()
    display = stack.enter_context(open_display(args, preset, clock))
    bus = ActionBus()
    controls = Controls(preset.controls)
    audio = open_audio(args, preset, clock)
    stack.callback(audio.close)
    from vj.show.blends import TransitionWorker

    transitions = session.transitions
    state = ShowState(
        preset, controls, overrides, transitions=transitions, video=session.video, control_images=session.control_images
    )
    loop = EngineLoop(state, make_engine, session.settings, audio, FrameSlot(), clock)
    loop.worker = TransitionWorker(transitions) if transitions else None  # idle unless latent_blend
    if loop.worker is not None:
        stack.callback(loop.worker.close)

    def new_guidance(p):
        for warning in make_engine.use_preset(p, loop.engine):
            state.warnings.add(warning)

    loop.on_preset.append(new_guidance)
    if args.record:
        start_recording(args, stack, preset, text, overrides, session, audio, loop, clock)
    midi = None
    if args.midi:
        from vj.live.controls.midi.input import MidiInput
        from vj.live.controls.midi.map import MidiMap

        midi = stack.enter_context(MidiInput(args.midi, MidiMap.for_preset(preset), controls, bus, clock=clock))
        loop.on_reload.append(lambda p: midi.set_map(MidiMap.for_preset(p)))
    show = Show(
        loop,
        display,
        bus,
        clock,
        hud=not args.no_hud,
        stats_path=args.stats,
        midi=midi,
        duration=args.duration,
        outputs=outputs,
    )
    listening = "off"
    if args.osc != "off":
        from vj.live.controls.osc import OscInput, parse_endpoint

        host, port = parse_endpoint(args.osc)
        osc = OscInput(
            host,
            port,
            controls=controls,
            bus=bus,
            scene_count=lambda: state.scenes.count,
            status=show.record,
            allow=args.osc_allow,
        )
        stack.callback(osc.close)
        listening = f"listening on {osc.endpoint} (UDP; /vj/status replies with the show's state)"
    recording = loop.recording
    show.greeting = [
        f"vj live: {args.preset}, {preset.makes_frames}, "
        f"{preset.width}x{preset.height} at {preset.frames_per_second:g} fps",
        f"  display: {display.describe()}",
        f"  audio: {audio.description}",
        f"  OSC: {listening}",
        f"  MIDI: {args.midi or 'none (--midi NAME)'}",
        f"  video in: {session.video.description if session.video is not None else 'none (--video-in SOURCE)'}",
        f"  outputs: {', '.join(o.target for o in outputs) or 'none (--out TARGET)'}",
        f"  recording: {args.record if recording is not None else 'none (--record DIR)'}",
        f"  {start_line()}",
    ]
    return show


def start_recording(args, stack, preset, text, overrides, session, audio, loop, clock):
    """`--record DIR`: the show's audio, presets, actions and frames into DIR as it runs (vj.live.recording)."""
    from vj.live.recording import ShowRecording
    from vj.show.recordings.layout import RecordingError

    if session.video is not None:
        raise RecordingError(
            "--record: a show with video in (Video Source) cannot be recorded yet: its video frames would be "
            "missing from the replay; record without --video-in"
        )
    if any(c.video_file for c in preset.controlnets):
        raise RecordingError(
            "--record: a ControlNet playing a video file cannot be recorded yet: a live show plays it by the wall "
            "clock, so a replay could not find its frames; use a picture or `previous`"
        )
    info = {
        "preset": str(Path(args.preset).absolute()),
        "overrides": {k: v for k, v in overrides.items() if v is not None},
        "strict": args.strict,
        "device": args.device,
        "dtype": args.dtype,
        "compile": args.compile,
        "audio": audio.description,
        "tempo_source": preset.tempo_source,
    }
    recording = ShowRecording.start(args.record, info, text, audio.sample_rate, preset.frames_per_second, clock.start)
    stack.callback(recording.close)
    audio.observe(recording)
    loop.record(recording)


def main(args):
    with contextlib.ExitStack() as stack:
        show = build(args, stack)
        print("\n".join(show.greeting), flush=True)  # the show is up: where it listens, what it shows and hears
        signal.signal(signal.SIGTERM, lambda *_: show.bus.put(Quit(), "signal"))
        return show.run()
