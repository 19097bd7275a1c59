"""The `vj` command: check, analyze, render, live, replay, devices, bench, schema."""

import argparse
import logging
import os
import sys
from pathlib import Path

from vj.config.keys import NON_NEGATIVE, POSITIVE, POSITIVE_INTEGER, in_range
from vj.show.guidance_inputs import perceptor_names
from vj.config.loading import PresetError, load_preset
from vj.config.schema import FIELDS as PRESET_KEYS
from vj.errors import VjError


class UsageError(VjError):
    """A command-line value that cannot be used."""


def _count(n, noun):
    return f"{n} {noun}{'' if n == 1 else 's'}"


def cmd_check(args):
    failed = False
    for path in args.presets:
        try:
            preset = load_preset(path, strict=args.strict)
        except PresetError as exc:
            print(exc, file=sys.stderr)
            failed = True
            continue
        prompts = sum(len(s.prompts) for s in preset.scenes)
        names = ", ".join(preset.input_variables)
        total = sum(preset.scene_durations())
        live = f"controls: {', '.join(preset.control_names)}, " if preset.controls else ""
        if preset.midi:
            live += f"MIDI: {_count(len(preset.midi.cc), 'knob')}, {_count(len(preset.midi.notes), 'note')}, "
        print(
            f"{path}: ok: {_count(len(preset.scenes), 'scene')}, {_count(prompts, 'prompt')}, "
            f"audio variables: {names}, {live}scenes last {total:g} s, {preset.width}x{preset.height} at "
            f"{preset.frames_per_second:g} fps, {preset.makes_frames}"
        )
        guided = perceptor_names(preset)
        if guided:
            print(f"{path}: CLIP guidance: {', '.join(guided)}, {preset.cutouts} cutouts")
        if preset.controlnets:
            nets = ", ".join(f"{c.model} ({c.preprocessor} of {Path(c.image).name})" for c in preset.controlnets)
            print(f"{path}: ControlNet: {nets}")
        for warning in preset.warnings:
            print(f"{path}: warning: {warning}")
    return 1 if failed else 0


def _numeric(convert, integer=False):
    """An argparse type: the text as a number (or an integer), then `convert` (a key's check, raising ValueError
    with what is valid) on it."""

    def parse(text):
        try:
            value = int(text) if integer else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {'an integer' if integer else 'a number'}, got '{text}'"
            ) from None
        try:
            return convert(value)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def _preset_key(name):
    """An argparse type for an option that replaces preset key `name`: the values the key takes."""
    check = PRESET_KEYS[name].check
    return _numeric(check.convert, integer=check.schema["type"] == "integer")


def _at_least_two(value):
    if value < 2:
        raise ValueError(f"must be an integer >= 2, got {value}")
    return value


_positive = _numeric(POSITIVE.convert)
_non_negative = _numeric(NON_NEGATIVE.convert)
_positive_integer = _numeric(POSITIVE_INTEGER.convert, integer=True)
_non_negative_integer = _numeric(lambda value: int(NON_NEGATIVE.convert(value)), integer=True)
_size = _preset_key("width")  # width and height take the same values
_block_size = _numeric(in_range(0, 65536, integer=True).convert, integer=True)


def _output_file(path, option, suffixes=None, overwrite=True):
    """Check before any work that `path` can be written: its folder exists and is writable, it ends in one of
    `suffixes` (when given), it is no folder, and it does not exist unless `overwrite`."""
    path = Path(path)
    if suffixes and path.suffix.lower() not in suffixes:
        raise UsageError(f"{option} '{path}' must end in {' or '.join(suffixes)}")
    if path.is_dir():
        raise UsageError(f"{option} '{path}' is a folder; give a file name in it")
    if path.exists() and not overwrite:
        raise UsageError(f"{option} '{path}' exists; pass --overwrite to replace it")
    if path.exists() and not os.access(path, os.W_OK):
        raise UsageError(f"{option} '{path}' cannot be written; give another file name")
    _writable_folder(path.parent, option, path)


def _output_folder(path, option):
    """Check before any work that folder `path` exists, or can be made in a folder that exists, and can be
    written."""
    path = Path(path)
    _writable_folder(path if path.exists() else path.parent, option, path)


def _writable_folder(folder, option, path):
    """UsageError unless `folder`, where `path` goes, is a folder that can be written."""
    if not folder.is_dir():
        what = f"'{folder}' is a file, not a folder" if folder.exists() else f"folder '{folder}' does not exist"
        raise UsageError(f"{option} '{path}': {what}; give a path in an existing folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"{option} '{path}': folder '{folder}' cannot be written; give a path in a writable folder")


def _latency(text):
    """--latency: 'low', 'high' or seconds > 0, as sounddevice takes it."""
    if text in ("low", "high"):
        return text
    try:
        return _positive(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"must be 'low', 'high' or seconds > 0, got {text}") from None


def cmd_analyze(args):
    from vj.commands import analyze

    _output_file(args.output, "-o")
    if args.plot:
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        _output_file(args.plot, "--plot", tuple(f".{kind}" for kind in FigureCanvasAgg.get_supported_filetypes()))
    preset = load_preset(args.preset, analyze.audio_overrides(args.audio))
    fps = args.fps or preset.frames_per_second
    count, names = analyze.run(args.audio, preset, fps, args.start, args.duration, args.output, args.plot)
    print(
        f"wrote {count} frames of {', '.join(names)} to {args.output}"
        + (f" and a plot to {args.plot}" if args.plot else "")
    )
    return 0


def cmd_render(args):
    from vj.commands import render

    _output_file(args.output, "-o", (".mp4",), args.overwrite)
    if args.frames:
        _output_folder(args.frames, "--frames")
    if args.ray is not None:
        from vj.cluster import render as cluster_render

        return cluster_render.main(args)
    return render.main(args)


def cmd_morph(args):
    from vj.commands import morph

    _output_file(args.output, "-o", (".png", ".mp4"), args.overwrite)
    return morph.main(args)


def cmd_prerender(args):
    from vj.commands import prerender

    if args.ray is not None:
        from vj.cluster import prerender as cluster_prerender

        return cluster_prerender.main(args)
    return prerender.main(args)


def _cluster_options(p, segments=True):
    """--ray [ADDRESS] and the options of a job spread over a Ray cluster (vj.cluster)."""
    from vj.cluster.segments import DEFAULT_WARMUP

    g = p.add_argument_group("Ray cluster (pip install 'vj[ray]')")
    g.add_argument(
        "--ray",
        nargs="?",
        const="local",
        metavar="ADDRESS",
        help="spread the work over a Ray cluster: the head's HOST:PORT (ray start --head), or no address for a "
        "local Ray instance on this machine",
    )
    g.add_argument("--workers", type=_positive_integer, help="workers (default: one per GPU, or per CPU without GPUs)")
    if segments:
        g.add_argument(
            "--segments", type=_positive_integer, help="segments the timeline is cut into (default: one per worker)"
        )
        g.add_argument(
            "--warmup",
            type=_non_negative_integer,
            default=DEFAULT_WARMUP,
            metavar="K",
            help=f"frames each segment renders before its first and throws away (default {DEFAULT_WARMUP}: "
            "the seams measured invisible on the shipped presets)",
        )


def _check_video_options(args):
    """--out, --headless and --video-in, refused before the models load."""
    from vj.video.outputs.targets import check_target
    from vj.video.sources.specs import check_video_spec

    problems = [("--out", check_target(t)) for t in args.out or ()]  # each problem names its target or source
    problems.append(("--video-in", check_video_spec(args.video_in) if args.video_in else None))
    for option, problem in problems:
        if problem:
            raise UsageError(f"{option}: {problem}")
    twice = sorted({t for t in args.out or () if args.out.count(t) > 1})
    if twice:
        raise UsageError(f"--out {', '.join(twice)} given twice; each target takes the frames once")
    if args.headless and not args.out:
        raise UsageError("--headless shows nothing: give one or more --out TARGET to send the frames to")


def cmd_live(args):
    from vj.live import main as live

    _check_video_options(args)
    if args.stats:
        _output_file(args.stats, "--stats")
    if args.record:
        from vj.show.recordings.layout import check_new_folder

        check_new_folder(args.record, "--record")  # before any model loads
    return live.main(args)


def _preset_override(text):
    """--preset-override KEY=VALUE: a preset key and its value as YAML reads it (checked with the preset)."""
    import yaml

    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    if key not in PRESET_KEYS:
        from vj.config.loading import near_spelling

        near = near_spelling(key, list(PRESET_KEYS))
        raise argparse.ArgumentTypeError(f"unknown preset key {key!r}" + (f" (did you mean {near!r}?)" if near else ""))
    try:
        return key, yaml.safe_load(value)
    except yaml.YAMLError:
        return key, value


def cmd_replay(args):
    from vj.commands import replay

    if args.output:
        _output_file(args.output, "-o", (".mp4",), args.overwrite)
    if args.frames:
        _output_folder(args.frames, "--frames")
    if args.ray is not None:
        from vj.cluster import replay as cluster_replay

        return cluster_replay.main(args)
    return replay.main(args)


def cmd_devices(args):
    from vj.commands import devices

    print(devices.report())
    return 0


def cmd_bench(args):
    from vj.commands import bench

    return bench.main(args)


def cmd_schema(args):
    from vj.config import reference

    text = reference.key_tables() if args.markdown else reference.json_schema_text()
    if not args.output:
        sys.stdout.write(text)
        return 0
    try:
        with open(args.output, "w", encoding="utf-8") as out:
            out.write(text)
    except OSError as exc:
        raise UsageError(f"cannot write '{args.output}': {exc.strerror}") from None
    print(f"wrote the {'key tables' if args.markdown else 'JSON Schema'} to {args.output}")
    return 0


def _device(text):
    """--device: auto, cpu, cuda, cuda:N or mps (vj.engine.devices picks and checks it when the engine loads)."""
    if text == "auto":  # the default, which argparse passes here too: parsing it imports no torch
        return text
    from vj.engine.devices import is_device_name

    if not is_device_name(text):
        raise argparse.ArgumentTypeError(f"invalid choice: '{text}' (choose from auto, cpu, cuda, cuda:N, mps)")
    return text


_MODEL_HELP = "model: hub id, local path, 'tiny' or 'arch:sd-turbo' (default: the preset's)"
_VAE_HELP = "'auto', 'taesd' or a hub id/path (default: the preset's)"


def _model_options(p, vae=True, defaults=None, helps=None):
    """--model, --vae (unless not `vae`), --width and --height (multiples of 8): the preset's unless given, or
    `defaults` (option name -> value); `helps` (option name -> text) replaces the model's and VAE's help texts."""
    defaults, helps = defaults or {}, {"model": _MODEL_HELP, "vae": _VAE_HELP, **(helps or {})}
    p.add_argument("--model", default=defaults.get("model"), help=helps["model"])
    if vae:
        p.add_argument("--vae", default=defaults.get("vae"), help=helps["vae"])
    p.add_argument("--width", type=_size, default=defaults.get("width"), help="frame width (multiple of 8)")
    p.add_argument("--height", type=_size, default=defaults.get("height"), help="frame height (multiple of 8)")


def _engine_options(p):
    """Where and how the engine runs: the same options for render, live, prerender, morph and bench."""
    p.add_argument(
        "--device",
        type=_device,
        default="auto",
        metavar="{auto,cpu,cuda,cuda:N,mps}",
        help="where the engine runs (default auto: CUDA, then Apple's MPS, then the CPU)",
    )
    p.add_argument(
        "--dtype",
        choices=["auto", "float16", "float32", "bfloat16"],
        default="auto",
        help="weights and activations (default: float16 on CUDA, float32 on MPS and the CPU)",
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the UNet and VAE (faster frames after a slow start; needs a C compiler)",
    )


class _Parser(argparse.ArgumentParser):
    """A bad option or value is one line, exit status 2, like the commands' own errors."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _strict_option(p):
    p.add_argument(
        "--strict",
        action="store_true",
        help="refuse what vj would approximate of a pytti config (VQGAN, depth/flow stabilization, sizes not a "
        "multiple of 8, pre-animation steps) instead of a warning",
    )


def build_parser():
    parser = _Parser(prog="vj", description="Audio-reactive VJ: presets, analysis, renders.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "check",
        help="validate presets and print a summary of each",
        description="Validate presets; print a summary, or every error with file and line.",
    )
    p.add_argument("presets", nargs="+", metavar="PRESET", help="YAML preset files")
    _strict_option(p)
    p.set_defaults(func=cmd_check)

    p = sub.add_parser(
        "analyze",
        help="per-frame audio variable values to CSV (and a plot)",
        description="Run the preset's filters over an audio file; write frame, t and one column per variable.",
    )
    p.add_argument("audio", metavar="AUDIO", help="audio file (wav, flac, ogg, mp3)")
    p.add_argument("--preset", required=True, help="preset whose input_audio_filters to use")
    p.add_argument("--fps", type=_preset_key("frames_per_second"), help="frames per second (default: the preset's)")
    p.add_argument("--start", type=_non_negative, default=0.0, help="first frame's time in seconds (default 0)")
    p.add_argument("--duration", type=_positive, help="seconds to analyse (default: to the end of the audio)")
    p.add_argument("-o", "--output", required=True, help="CSV file to write")
    p.add_argument("--plot", metavar="PNG", help="also draw band levels above the waveform into this PNG")
    p.set_defaults(func=cmd_analyze)

    p = sub.add_parser(
        "render",
        help="render a preset to an MP4 synced with the track",
        description="Render a preset offline to H.264 + AAC in one MP4.",
    )
    p.add_argument("preset", metavar="PRESET")
    p.add_argument("--audio", metavar="TRACK", help="audio track (default: the preset's input_audio)")
    p.add_argument("-o", "--output", required=True, metavar="OUT.mp4", help="MP4 file to write")
    _model_options(p)
    p.add_argument("--start", type=_non_negative, default=0.0, help="seconds into the show to start")
    p.add_argument(
        "--duration", type=_positive, help="seconds to render (default: the preset's, the track's or the scenes')"
    )
    p.add_argument("--fps", type=_preset_key("frames_per_second"), help="frames per second (default: the preset's)")
    p.add_argument("--seed", type=_preset_key("seed"), help="random seed (default: the preset's)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT.mp4 if it exists")
    p.add_argument("--frames", metavar="DIR", help="also save every frame as PNG into DIR")
    _strict_option(p)
    _engine_options(p)
    _cluster_options(p)
    p.set_defaults(func=cmd_render)

    p = sub.add_parser(
        "live",
        help="the live show: audio in, MIDI/OSC/keys, frames on a display",
        description="Run a preset live: analyse a mic/line-in (or rehearse with a file), take MIDI, "
        "OSC and keys, show the newest frame fullscreen (or in a window).",
    )
    p.add_argument("preset", metavar="PRESET")
    _model_options(p)
    audio = p.add_mutually_exclusive_group()
    audio.add_argument(
        "--audio-device",
        metavar="D",
        help="input device: index or part of its name (default: the system's default input; 'none': no audio)",
    )
    audio.add_argument("--audio", metavar="FILE", help="rehearse with a file: play it and analyse what is heard")
    p.add_argument("--no-playback", action="store_true", help="with --audio: analyse in real time without playing")
    p.add_argument("--audio-output", metavar="D", help="with --audio: output device (index or part of its name)")
    p.add_argument("--sample-rate", type=_positive_integer, help="input sample rate (default: the device's)")
    p.add_argument(
        "--channels",
        type=lambda t: [int(c) for c in t.split(",")],
        metavar="1,2",
        help="input channels to mix down, 1-based (default 1,2; 1 on a mono input)",
    )
    p.add_argument(
        "--blocksize", type=_block_size, default=0, help="audio block size in samples (default 0: the device's)"
    )
    p.add_argument(
        "--latency", type=_latency, default="high", help="'low', 'high' or seconds (default high: the steadiest)"
    )
    p.add_argument("--midi", metavar="NAME", help="MIDI input port (part of its name)")
    p.add_argument(
        "--osc",
        default="127.0.0.1:9000",
        metavar="HOST:PORT",
        help="OSC address to listen on (default 127.0.0.1:9000; 'off' for none)",
    )
    p.add_argument(
        "--osc-allow",
        nargs="+",
        metavar="ADDR",
        help="with --osc beyond localhost: senders (addresses or networks) allowed",
    )
    p.add_argument("--display", type=int, default=0, metavar="N", help="monitor for fullscreen (default 0)")
    p.add_argument("--windowed", action="store_true", help="a window at the preset's size instead of fullscreen")
    p.add_argument(
        "--blend",
        action="store_true",
        help="crossfade between engine frames when the engine is slower than the display (default: repeat frames)",
    )
    p.add_argument("--no-hud", action="store_true", help="start with the HUD hidden (H shows it)")
    p.add_argument(
        "--video-in",
        metavar="SOURCE",
        help="Video Source mode from a file (played in real time, looped), a URL (udp://, srt://, rtsp://, "
        "http(s)://), camera:N or camera:NAME, or ndi:NAME (replaces the preset's video_path)",
    )
    p.add_argument(
        "--out",
        action="append",
        metavar="TARGET",
        help="also send the frames shown (no HUD) to TARGET: srt://HOST:PORT, udp://HOST:PORT, ndi:NAME, "
        "virtualcam, spout:NAME (Windows), syphon:NAME (macOS); repeatable",
    )
    p.add_argument("--headless", action="store_true", help="no window: the frames go only to the --out targets")
    p.add_argument("--stats", metavar="FILE", help="write JSON lines of show statistics, about one a second")
    p.add_argument(
        "--record",
        metavar="DIR",
        help="record the show into the new folder DIR (audio, presets, actions, frames, show.mp4) for `vj replay`",
    )
    p.add_argument("--duration", type=_positive, metavar="S", help="end the show after S seconds (unattended runs)")
    _strict_option(p)
    _engine_options(p)
    p.set_defaults(func=cmd_live)

    p = sub.add_parser(
        "replay",
        help="render a recorded show (vj live --record DIR) again, or at another quality",
        description="Without quality options: the frames the live engine rendered, again (bit-identical on the "
        "same machine and device; --verify checks). With --model, --width/--height, --steps, --fps or "
        "--preset-override: the performance re-rendered at that quality, with the recorded audio.",
    )
    p.add_argument("folder", metavar="DIR", help="a folder written by vj live --record")
    p.add_argument("-o", "--output", metavar="OUT.mp4", help="MP4 file to write, with the recorded audio")
    p.add_argument("--frames", metavar="PNGDIR", help="also save every frame as PNG into PNGDIR")
    p.add_argument(
        "--verify",
        action="store_true",
        help="count the frames identical to the live ones and compare the live variables with the audio "
        "analysed again (exit status 1 when a frame differs)",
    )
    _model_options(p)
    p.add_argument("--steps", type=_preset_key("steps"), help="denoising steps (default: the recorded preset's)")
    p.add_argument("--fps", type=_preset_key("frames_per_second"), help="frames per second of a re-render")
    p.add_argument(
        "--preset-override",
        action="append",
        type=_preset_override,
        metavar="KEY=VALUE",
        help="a preset key for every recorded preset version (repeatable), e.g. clip_guidance_scale=2",
    )
    p.add_argument("--overwrite", action="store_true", help="replace OUT.mp4 if it exists")
    _engine_options(p)
    _cluster_options(p)
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser(
        "prerender",
        help="compute a preset's latent-blend transitions into the cache",
        description="Compute the latent-blend transitions of a preset (each scene to the next, or "
        "every pair with --all-pairs) into the transition cache, so shows and renders "
        "find them ready. A second run finds them in the cache.",
    )
    p.add_argument("preset", metavar="PRESET")
    _model_options(p)
    p.add_argument(
        "--all-pairs",
        action="store_true",
        help="every ordered pair of scenes, not only each to the next (a show may jump anywhere)",
    )
    _engine_options(p)
    _cluster_options(p, segments=False)
    p.set_defaults(func=cmd_prerender)

    p = sub.add_parser(
        "morph",
        help="morph a word of the first scene into another: a strip or a clip",
        description="Token-level arithmetic between two words: step k edits FROM's tokens in its "
        "sentence to (1-k)*FROM + k*TO; one txt2img frame per step with the preset's "
        "seed, side by side in a PNG strip or one per frame in an MP4 clip.",
    )
    p.add_argument("preset", metavar="PRESET")
    p.add_argument("--from", dest="from_word", required=True, metavar="WORD", help="a word of scene 1's prompts")
    p.add_argument("--to", dest="to_word", required=True, metavar="WORD", help="the word it morphs into")
    p.add_argument(
        "--steps",
        type=_numeric(_at_least_two, integer=True),
        default=8,
        help="frames from FROM to TO, both included (default 8)",
    )
    p.add_argument("-o", "--output", required=True, metavar="OUT.png|OUT.mp4", help="strip (PNG) or clip (MP4)")
    _model_options(p, vae=False)
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    _engine_options(p)
    p.set_defaults(func=cmd_morph)

    p = sub.add_parser(
        "devices",
        help="engine devices, audio inputs and outputs, MIDI ports and displays",
        description="List the engine's devices (GPUs first), audio inputs and outputs, MIDI input ports "
        "and displays with their sizes.",
    )
    p.set_defaults(func=cmd_devices)

    p = sub.add_parser(
        "bench",
        help="time the frame engine per stage",
        description="Warm up, then time warp, encode, UNet, decode, conditioning and host copy.",
    )
    _model_options(
        p,
        defaults={"model": "tiny", "vae": "auto", "width": 256, "height": 256},
        helps={"model": "model (default tiny; arch:sd-turbo for real compute)", "vae": "'auto' or 'taesd'"},
    )
    p.add_argument("--frames", type=_positive_integer, default=20, help="timed frames after warm-up")
    p.add_argument("--steps", type=_preset_key("steps"), default=1, help="denoising steps per frame (1..50)")
    _engine_options(p)
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser(
        "schema",
        help="print the presets' JSON Schema (for editors) or README's key tables",
        description="Print the JSON Schema (draft-07) of preset files, which editors use to complete "
        "and check presets as they are typed, or with --markdown README's tables of "
        "preset and filter keys. Both are generated from the one definition of each key.",
    )
    p.add_argument("--markdown", action="store_true", help="print README's key tables instead of the JSON Schema")
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of standard output")
    p.set_defaults(func=cmd_schema)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING, format="vj: %(levelname)s: %(message)s"
    )
    try:
        return args.func(args)
    except VjError as exc:  # every error meant for the user: one line, no traceback
        print(f"vj {args.command}: error: {exc}", file=sys.stderr)
        return 2


THREAD_GRACE = 5.0  # seconds the `vj` process waits at exit for its threads to finish a frame or an audio block


def run():
    """The `vj` command: main(), then an exit that no thread of ours still inside torch, numba or scipy can abort.
    Python stops a daemon thread that wants the GIL back during shutdown by unwinding it, which inside their C++
    ends the process with 'terminate called without an active exception' (status 134): so the threads (all named
    vj-...) get THREAD_GRACE seconds, and if one is still busy the process ends at once, its output flushed."""
    import threading
    import time

    status = main()
    deadline = time.monotonic() + THREAD_GRACE
    ours = [t for t in threading.enumerate() if t.daemon and t.name.startswith("vj-")]
    for thread in ours:
        thread.join(max(0.0, deadline - time.monotonic()))
    if any(thread.is_alive() for thread in ours):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    sys.exit(status)


if __name__ == "__main__":
    run()
