"""`vj render`: a preset (and its track) to an MP4, frame i at show time start + i/fps."""

import sys
import time
from pathlib import Path

from tqdm import tqdm

from vj.show.engine_thread import FrameStream
from vj.commands.analyze import audio_overrides, frame_count, track_end
from vj.audio import AudioAnalyzer, FileSource
from vj.audio.sources.files import SilenceSource
from vj.show.session import ShowSession
from vj.show.blends import scene_changes
from vj.config.loading import PresetError, load_preset
from vj.video.outputs.mp4 import Mp4Writer, read_track
from vj.errors import VjError


class RenderError(VjError):
    """A render that cannot start or finish; the message says what to change."""


def plan(preset, args):
    """(audio path or None, duration in seconds, frame count) for this render."""
    track = Path(args.audio) if args.audio else preset.input_audio
    if preset.input_audio_filters and track is None:
        raise RenderError("the preset's input_audio_filters need a track: pass --audio TRACK or set input_audio")
    if track is not None:  # a missing or unreadable track fails here, before the models load
        source = FileSource(track, preset.input_audio_offset)
        end = track_end(source, track, preset.input_audio_offset)
        source.close()
    else:
        total = sum(preset.scene_durations())
        end = total, f"the scenes ({total:g} s in all)"
    if preset.duration:
        end = preset.duration, f"the preset's duration ({preset.duration:g} s)"
    count = frame_count(preset.frames_per_second, args.start, args.duration, end)
    return track, count / preset.frames_per_second, count


def requests(preset, director, track, start, count):
    fps = preset.frames_per_second
    source = FileSource(track, preset.input_audio_offset) if track is not None else SilenceSource()
    analyzer = AudioAnalyzer.for_preset(source, preset)
    try:
        for i in range(count):
            t = start + i / fps
            yield director.request(int(round(t * fps)), t, analyzer.advance_to(t))
    finally:
        source.close()


def render_preset(args):
    """The preset of a render (the command line's overrides applied, refused before any model loads when it cannot
    render) and its plan: (preset, track, duration, count)."""
    overrides = {
        "model": args.model,
        "vae": args.vae,
        "frames_per_second": args.fps,
        "width": args.width,
        "height": args.height,
        "seed": args.seed,
        **audio_overrides(args.audio),  # the command line's track wins over the preset's (perhaps missing) one
    }
    preset = load_preset(args.preset, overrides, strict=args.strict)
    if preset.video_problem:  # Video Source without video_path: refused before any model loads
        raise PresetError([preset.video_problem])
    if preset.audio_problem:  # input_audio's file is missing and no --audio: refused before any model loads
        raise PresetError([preset.audio_problem])
    track, duration, count = plan(preset, args)
    return preset, track, duration, count


def prepared_session(preset, start, duration, device, dtype, compile=False):
    """The render's ShowSession, its latent-blend transitions of the scene changes between `start` and `start +
    duration` computed (or found in the cache) before the first frame, as a show does while a scene plays."""
    session = ShowSession.open(preset, device, dtype, compile)
    try:
        if session.blends():
            pairs = scene_changes(preset, start, duration)
            if pairs:
                session.prepare(pairs)
    except BaseException:
        session.close()
        raise
    return session


def main(args):
    preset, track, duration, count = render_preset(args)
    for warning in preset.warnings:  # what was approximated or ignored, and a drawn random seed to repeat the render
        print(f"vj render: warning: {warning}", file=sys.stderr)
    out = Path(args.output)  # checked by the command line: it can be written
    if preset.tempo_source == "link":
        print(
            "vj render: note: tempo_source: link applies to live shows; this render takes the beat from the track",
            file=sys.stderr,
        )
    session = prepared_session(preset, args.start, duration, args.device, args.dtype, args.compile)
    try:
        engine = session.engine()
        director = session.director()
        audio = read_track(track, preset.input_audio_offset + args.start, duration) if track else None
        frames_dir = Path(args.frames) if args.frames else None
        if frames_dir:
            frames_dir.mkdir(parents=True, exist_ok=True)
        frames = requests(preset, director, track, args.start, count)
        return write(engine, frames, out, preset, audio, count, frames_dir)
    finally:
        session.close()


def write(engine, request_stream, out, preset, audio, count, frames_dir=None):
    """Render into `out`; on Ctrl-C or an error the frames so far stay in a playable file."""
    fps = preset.frames_per_second
    writer = Mp4Writer(out, fps, preset.width, preset.height, audio)
    stream = FrameStream(engine, request_stream)
    progress = tqdm(total=count, unit="frame", desc="render", file=sys.stderr, dynamic_ncols=True)
    started = time.perf_counter()
    try:
        try:
            for request, rgb in stream:
                writer.write(rgb)
                if frames_dir:
                    from PIL import Image

                    Image.fromarray(rgb).save(frames_dir / f"frame_{request.index:06d}.png")
                progress.update(1)
        finally:
            stream.close()
            writer.close()
            progress.close()
    except KeyboardInterrupt:
        print(
            f"vj render: interrupted; {writer.frames} of {count} frames ({writer.frames / fps:.2f} s) are in "
            f"'{out}', which plays",
            file=sys.stderr,
        )
        return 130
    except Exception as exc:
        raise RenderError(f"{exc} (the {writer.frames} frames rendered before it are in '{out}', which plays)") from exc
    took = time.perf_counter() - started
    print(
        f"wrote {writer.frames} frames ({writer.frames / fps:.2f} s at {fps:g} fps) to '{out}' in {took:.1f} s "
        f"({writer.frames / took:.1f} frames/s, model loading excluded)",
        file=sys.stderr,
    )
    return 0
