"""`vj live PRESET`: builds the show's parts from the command line and runs it until quit."""

import contextlib
import signal
import time

from vj.control.actions import ActionBus, Quit
from vj.control.controls import Controls
from vj.live.audio import open_audio
from vj.live.show import EngineLoop, Show
from vj.live.slot import FrameSlot
from vj.live.state import ShowState
from vj.preset import load_preset


class ShowClock:
    """Seconds since the show started (time.monotonic): the live show's only difference from a render's i/fps."""

    def __init__(self):
        self.start = time.monotonic()

    def __call__(self):
        return time.monotonic() - self.start


def build(args, stack):
    """The show `vj live ARGS` runs, with every part it opens registered on `stack` (a contextlib.ExitStack) to
    close in reverse order. Benchmarks build the same show this way and probe it."""
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
    clock = ShowClock()
    display = stack.enter_context(Display(size=(preset.width, preset.height), fullscreen=not args.windowed,
                                          display_index=args.display, blend=args.blend, clock=clock))
    bus = ActionBus()
    controls = Controls(preset.controls)
    audio = open_audio(args, preset, clock)
    stack.callback(audio.close)
    from engine.transition_cache import TransitionCache
    from vj.transitions import Transitions, TransitionWorker
    transitions = Transitions(components, preset, TransitionCache())
    state = ShowState(preset, controls, overrides, transitions=transitions)
    loop = EngineLoop(state, make_engine, engine_settings(preset), audio, FrameSlot(), clock)
    loop.worker = TransitionWorker(transitions)  # idle unless the preset has transition_mode: latent_blend
    stack.callback(loop.worker.close)
    midi = None
    if args.midi:
        from vj.control.midi import MidiInput, MidiMap
        midi = stack.enter_context(MidiInput(args.midi, MidiMap.for_preset(preset), controls, bus, clock=clock))
        loop.on_reload.append(lambda p: midi.set_map(MidiMap.for_preset(p)))
    show = Show(loop, display, bus, clock, hud=not args.no_hud, stats_path=args.stats, midi=midi,
                duration=args.duration)
    if args.osc != "off":
        from vj.control.osc import OscInput, parse_endpoint
        host, port = parse_endpoint(args.osc)
        osc = OscInput(host, port, controls=controls, bus=bus, scene_count=lambda: state.scenes.count,
                       status=show.record, allow=args.osc_allow)
        stack.callback(osc.close)
    return show


def main(args):
    with contextlib.ExitStack() as stack:
        show = build(args, stack)
        signal.signal(signal.SIGTERM, lambda *_: show.bus.put(Quit(), "signal"))
        return show.run()
