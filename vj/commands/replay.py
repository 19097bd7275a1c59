"""`vj replay DIR`: a recorded live show (`vj live --record DIR`) rendered again.

Without quality options it renders the frames the live engine rendered, from what was recorded with each (bit-
identical on the same machine and device; `--verify` counts the frames whose digest matches and compares the
recorded variables with the recorded audio analysed again). With `--model`, `--width`/`--height`, `--steps`,
`--fps` or `--preset-override` it re-renders the performance at that quality: frame i at show time i/fps, the
variables from the recorded audio, controls, scenes, presets, blackouts and freezes at their recorded times.
"""

import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from vj.commands.render import RenderError
from vj.config.loading import PresetError
from vj.engine.diffusion.frames import EngineSettings
from vj.live.recording import digest
from vj.show.director import Director
from vj.show.engines import engine_settings
from vj.show.recordings.reader import RecordedAnalysis, Recording, RecordedTimeline
from vj.show.recordings.layout import RecordingError
from vj.show.session import ShowSession
from vj.show.timeline import ScenePosition
from vj.video.frames import nearest
from vj.video.outputs.mp4 import Mp4Writer

QUALITY_OPTIONS = ("model", "vae", "width", "height", "steps", "fps", "preset_override")


def quality_overrides(args):
    """The preset keys a re-render changes ({} for a replay of the live frames)."""
    given = {
        "model": args.model,
        "vae": args.vae,
        "width": args.width,
        "height": args.height,
        "steps": args.steps,
        "frames_per_second": args.fps,
    }
    given.update(dict(args.preset_override or ()))
    return {k: v for k, v in given.items() if v is not None}


def open_recording(folder, overrides):
    """(the Recording in `folder`, its preset versions with `overrides`); a version that no longer loads is a
    RecordingError naming it."""
    recording = Recording.open(folder)
    try:
        return recording, recording.presets(overrides)
    except PresetError as exc:
        raise RecordingError(str(exc).splitlines()[0]) from None


def open_session(recording, presets, device, dtype, compile=False):
    """The replay's ShowSession on `device` and `dtype` ('auto': as recorded)."""
    device = device if device != "auto" else recording.info.get("device", "auto")
    dtype = dtype if dtype != "auto" else recording.info.get("dtype", "auto")
    return ShowSession.open(presets[0], device, dtype, compile or bool(recording.info.get("compile")))


def open_rerender(folder, overrides, device, dtype, compile=False):
    """(recording, presets, session) of a re-render (a cluster worker opens its own)."""
    recording, presets = open_recording(folder, overrides)
    return recording, presets, open_session(recording, presets, device, dtype, compile)


def main(args):
    overrides = quality_overrides(args)
    if overrides and args.verify:
        raise RecordingError("--verify compares the live frames: leave out the quality options to replay them")
    recording, presets = open_recording(args.folder, overrides)
    session = open_session(recording, presets, args.device, args.dtype, args.compile)
    try:
        if overrides:
            return rerender(recording, presets, session, args)
        return replay(recording, presets, session, args)
    finally:
        session.close()


def _audio_track(recording, duration):
    """The recorded audio on the show's time line from 0 to `duration`, for the MP4: (1, n) float32, rate."""
    samples, rate = recording.audio()
    n = int(round(duration * rate))
    out = np.zeros(n, np.float32)
    if samples is not None:
        at = int(round(recording.audio_start * rate))
        src = samples[max(0, -at) :]
        dst = max(0, at)
        count = max(0, min(len(src), n - dst))
        out[dst : dst + count] = src[:count]
    return out[None], rate


class _Writer:
    """The MP4 (and PNG folder) of a replay; frames of another size than the first are scaled to it (the live
    show's out-of-memory fallback renders smaller)."""

    def __init__(self, args, recording, fps, size, count):
        self.out = Path(args.output) if args.output else None
        self.mp4 = None
        if self.out is not None:
            width, height = size
            self.mp4 = Mp4Writer(self.out, fps, width, height, _audio_track(recording, count / fps))
        self.size = size
        self.frames = Path(args.frames) if args.frames else None
        if self.frames:
            self.frames.mkdir(parents=True, exist_ok=True)

    def png(self, rgb, n):
        if self.frames:
            from PIL import Image

            Image.fromarray(rgb).save(self.frames / f"frame_{n:06d}.png")

    def video(self, rgb, black=False):
        if self.mp4 is not None:
            rgb = nearest(rgb, *self.size)
            self.mp4.write(np.zeros_like(rgb) if black else rgb)

    @property
    def written(self):
        return self.mp4.frames if self.mp4 is not None else 0

    def close(self):
        if self.mp4 is not None:
            self.mp4.close()


def _progress(count, desc):
    return tqdm(total=count, unit="frame", desc=desc, file=sys.stderr, dynamic_ncols=True)


def _interrupted(writer, fps, count):
    where = f" are in '{writer.out}', which plays" if writer.out is not None else " were rendered"
    print(
        f"vj replay: interrupted; {writer.written} of {count} frames ({writer.written / fps:.2f} s){where}",
        file=sys.stderr,
    )
    return 130


def replay(recording, presets, session, args):
    """The live frames again, each from what was recorded with it; returns the exit status."""
    factory = session.engines
    timeline = RecordedTimeline(recording, presets)
    frames = recording.frames
    fps = recording.fps
    first = presets[0]
    count = int(np.ceil(recording.end * fps - 1e-9))
    writer = _Writer(args, recording, fps, (first.width, first.height), count)
    pending = [e for e in recording.events if e.get("kind") in ("settings", "preset", "prompt")]
    engine, director, preset = None, Director(first, control_images=session.control_images), first
    matched, first_bad, digests = 0, None, []
    shown, n = None, 0  # the newest replayed frame, and the next MP4 frame
    progress = _progress(len(frames), "replay")
    try:
        try:
            for frame in frames:
                while pending and pending[0]["before"] <= frame["seq"]:
                    event = pending.pop(0)
                    if event["kind"] == "settings":
                        engine = factory(EngineSettings(**event["settings"]))
                    else:
                        preset = presets[event["version"]]
                        director = Director(preset, control_images=session.control_images)
                        if session.blends():
                            session.transitions.use_preset(preset)
                        if engine is not None:
                            factory.use_preset(preset, engine)
                if engine is None:
                    engine = factory(engine_settings(preset))
                position = ScenePosition(frame["scene"], frame.get("previous"), frame["mix"])
                request = director.request(frame["index"], frame["clock"], frame["variables"], position)
                if frame.get("guide_weight", 0.0) > 0:
                    request = _with_guide(session, request, position, frame["guide_weight"])
                rgb = engine.render(request)
                same = digest(rgb) == frame["sha256"]
                matched += same
                if not same and first_bad is None:
                    first_bad = frame["seq"]
                digests.append(same)
                writer.png(rgb, frame["seq"])
                while n / fps < frame["clock"] - 1e-9 and shown is not None:  # until this frame's time
                    writer.video(shown, timeline.is_blackout(n / fps))
                    n += 1
                shown = rgb
                progress.update(1)
            while shown is not None and n < count:
                writer.video(shown, timeline.is_blackout(n / fps))
                n += 1
        finally:
            writer.close()
            progress.close()
    except KeyboardInterrupt:
        return _interrupted(writer, fps, count)
    if args.verify:
        return verify_report(recording, presets, matched, first_bad)
    print(f"vj replay: {len(frames)} frames replayed, {matched} identical to the live ones", file=sys.stderr)
    return 0


def _with_guide(session, request, position, weight):
    """The request with the latent-blend tree's picture the live frame used (computed now if not cached)."""
    pair = (position.previous, position.scene)
    if not session.transitions.ready(*pair):
        session.prepare([pair])
    found = session.transitions.guide(*pair, position.mix)
    if found is None:
        raise RecordingError(f"the latent-blend transition {pair[0] + 1} -> {pair[1] + 1} cannot be computed again")
    return dataclasses.replace(request, guide=found[0], guide_weight=weight)


def verify_report(recording, presets, matched, first_bad):
    """Print the frames that match the recording, and live against offline analysis; 0 when all frames match."""
    frames = recording.frames
    print(f"frames: {matched} of {len(frames)} identical to the live ones", end="")
    print(
        ""
        if first_bad is None
        else f"; the first that differs is frame {first_bad} (index {frames[first_bad]['index']})"
    )
    for line in live_against_offline(recording, presets):
        print(line)
    return 0 if first_bad is None else 1


def live_against_offline(recording, presets):
    """'variable NAME: largest difference D' for each analysed variable: the values the live frames used against
    the recorded audio analysed again at the same sample."""
    analysis = RecordedAnalysis(recording, presets)
    largest = {}
    for frame in recording.frames:
        offline = analysis.at(frame["t"])
        for name, value in offline.items():
            if name in frame["variables"]:
                largest[name] = max(largest.get(name, 0.0), abs(frame["variables"][name] - value))
    if recording.info.get("tempo_source") == "link":
        yield "note: tempo_source link: the musical variables came from the Link session, not the audio"
    for name, diff in largest.items():
        yield f"variable {name}: largest difference live - offline {diff:.3g}"


@dataclasses.dataclass(frozen=True)
class RerenderStep:
    """One output frame of a re-render: the preset version it shows, its request (while frozen: the last one made),
    whether that request is new (not frozen), and whether the audience saw black."""

    index: int
    preset: object
    request: object
    fresh: bool
    black: bool


def rerender_count(recording, presets):
    """The re-render's frame count: the show's length at the first preset's frame rate."""
    return max(1, int(round(recording.end * presets[0].frames_per_second)))


def rerender_steps(recording, presets, session):
    """The re-render's steps, frame i at show time i/fps: the Director and the analysis advance through every frame
    (as the live show's did); its latent-blend transitions are prepared first."""
    first = presets[0]
    fps = first.frames_per_second
    timeline = RecordedTimeline(recording, presets)
    analysis = RecordedAnalysis(recording, presets)
    if session.blends():
        pairs = sorted({(e["from"], e["to"]) for e in recording.kind("scene")})
        if pairs:
            session.prepare(pairs)
    version, preset, director, held = 0, first, session.director(), None
    for i in range(rerender_count(recording, presets)):
        t = i / fps
        if timeline.version(t) != version:
            version = timeline.version(t)
            preset = presets[version]
            director = Director(
                preset,
                transitions=session.transitions if session.blends() else None,
                control_images=session.control_images,
            )
            if session.blends():
                session.transitions.use_preset(preset)
        fresh = held is None or not timeline.is_frozen(t)
        if fresh:
            inputs = analysis.at(max(0.0, t - recording.audio_start))
            inputs.update(timeline.controls(t, preset.control_names))
            held = director.request(int(round(t * fps)), t, inputs, timeline.position(t))
        yield RerenderStep(i, preset, held, fresh, timeline.is_blackout(t))


def rendered_steps(session, steps, start=0, end=None):
    """(step, frame) for the steps from frame `start` to `end` (the steps before `start` only advance the plan): a
    new engine at `start`, the session's factory following the steps' preset versions, a frozen step repeating the
    last frame (or rendering its request when there is none yet)."""
    factory, first = session.engines, session.preset
    engine, used, last = None, None, None
    for step in steps:
        if end is not None and step.index >= end:
            return
        if step.index < start:
            continue
        if engine is None:
            engine = factory(engine_settings(step.preset))
            if step.preset is not first:
                factory.use_preset(step.preset, engine)
        elif step.preset is not used:
            factory.use_preset(step.preset, engine)
            if engine_settings(step.preset) != engine.settings:
                engine = factory(engine_settings(step.preset))
        used = step.preset
        if step.fresh or last is None:
            last = engine.render(step.request)
        yield step, last


def rerender(recording, presets, session, args):
    """The performance at another quality: frame i at show time i/fps."""
    first = presets[0]
    fps = first.frames_per_second
    count = rerender_count(recording, presets)
    writer = _Writer(args, recording, fps, (first.width, first.height), count)
    progress = _progress(count, "re-render")
    started = time.perf_counter()
    try:
        try:
            for step, rgb in rendered_steps(session, rerender_steps(recording, presets, session)):
                writer.png(rgb, step.index)
                writer.video(rgb, step.black)
                progress.update(1)
        finally:
            writer.close()
            progress.close()
    except KeyboardInterrupt:
        return _interrupted(writer, fps, count)
    except (RecordingError, RenderError):
        raise
    except Exception as exc:
        raise RenderError(f"{exc} (the {writer.written} frames rendered before it are kept)") from exc
    took = time.perf_counter() - started
    target = f"to '{writer.out}'" if writer.out is not None else ""
    print(
        f"re-rendered {count} frames ({count / fps:.2f} s at {fps:g} fps, {first.width}x{first.height}) {target} "
        f"in {took:.1f} s",
        file=sys.stderr,
    )
    return 0
