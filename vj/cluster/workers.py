"""What runs on a cluster's workers: each loads the models once and renders the segments or transitions it is given.

The classes are plain Python; the driver makes them Ray actors (`ray.remote(SegmentRenderer)`), so this module
imports no Ray. A worker computes exactly what the serial command computes: the same preset (the driver passes the
resolved seed), the same request stream from frame 0 (the audio analysis and the Director advance through the frames
before its segment without rendering them), a fresh engine at the segment's start: the first segment's frames are
the serial render's, bit for bit.
"""

import argparse
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RenderJob:
    """A render as the command line gave it (`vj render`'s values; `seed` resolved by the driver) and how many torch
    threads a worker on a CPU uses."""

    args: dict
    threads: int = 0  # 0: torch's default

    def namespace(self):
        return argparse.Namespace(**self.args)


class SegmentRenderer:
    """A worker of a distributed `vj render`: the preset's session loaded once, segments rendered on request."""

    def __init__(self, job):
        import os

        import torch

        from vj.commands.render import prepared_session, render_preset
        from vj.errors import VjError

        if job.threads:
            torch.set_num_threads(job.threads)
        self.pid = os.getpid()
        self.problem = None
        try:
            args = self.args = job.namespace()
            self.preset, self.track, duration, self.count = render_preset(args)
            self.session = prepared_session(self.preset, args.start, duration, args.device, args.dtype, args.compile)
        except VjError as exc:  # the driver says it in one line, as a serial render would
            self.problem = f"{type(exc).__name__}: {exc}"

    def ready(self):
        """(process id, frame count, why the worker cannot render or None), once the models are loaded."""
        return self.pid, getattr(self, "count", None), self.problem

    def render(self, segment, chunk=8):
        """Yield the kept frames of `segment` in order, as (frames, blacks) chunks of at most `chunk` frames: (n, H,
        W, 3) uint8 and n booleans (a render shows no black of its own: all False)."""
        from vj.commands.render import requests

        director, engine = self.session.director(), self.session.engine()
        batch = []
        stream = requests(self.preset, director, self.track, self.args.start, self.count)
        try:
            for i, request in enumerate(stream):
                if i >= segment.end:
                    break
                if i < segment.start:  # the analysis and the Director go on; nothing is rendered
                    continue
                rgb = engine.render(request)
                if i >= segment.first:
                    batch.append(rgb)
                    if len(batch) == chunk:
                        yield np.stack(batch), np.zeros(len(batch), bool)
                        batch = []
        finally:
            stream.close()
        if batch:
            yield np.stack(batch), np.zeros(len(batch), bool)


class TransitionComputer:
    """A worker of a distributed `vj prerender`: the preset's diffusion model loaded once, transitions on request."""

    def __init__(self, preset_path, overrides, device, dtype, compile=False, threads=0):
        import os

        import torch

        from vj.config.loading import load_preset
        from vj.errors import VjError
        from vj.show.session import ShowSession

        if threads:
            torch.set_num_threads(threads)
        self.pid, self.problem = os.getpid(), None
        try:
            preset = load_preset(preset_path, overrides)
            self.session = ShowSession.open(preset, device, dtype, compile, guidance=False)
        except VjError as exc:
            self.problem = f"{type(exc).__name__}: {exc}"

    def ready(self):
        """(process id, None, why the worker cannot compute or None), once the model is loaded."""
        return self.pid, None, self.problem

    def compute(self, a, b):
        """Scene pair a -> b, as one streamed item: (its cache key, the cache's arrays, whether this worker found it in
        its cache)."""
        transitions = self.session.transitions
        cached = transitions.ready(a, b)
        transitions.compute(a, b)
        key = transitions.key(a, b)
        yield key, transitions.cache.get(key), cached


class ReplayRenderer:
    """A worker of a distributed `vj replay DIR --ray`: the recording's re-render (frame i at show time i/fps, at
    the recorded or the given quality), its session loaded once, segments rendered on request."""

    def __init__(self, folder, overrides, device, dtype, compile=False, threads=0):
        import os

        import torch

        from vj.commands.replay import open_rerender
        from vj.errors import VjError

        if threads:
            torch.set_num_threads(threads)
        self.pid, self.problem = os.getpid(), None
        try:
            self.recording, self.presets, self.session = open_rerender(folder, overrides, device, dtype, compile)
        except VjError as exc:
            self.problem = f"{type(exc).__name__}: {exc}"

    def ready(self):
        """(process id, frame count, why the worker cannot render or None), once the models are loaded."""
        from vj.commands.replay import rerender_count

        count = None if self.problem else rerender_count(self.recording, self.presets)
        return self.pid, count, self.problem

    def render(self, segment, chunk=8):
        """Yield the kept frames of `segment` in order, as (frames, blacks) chunks of at most `chunk` frames."""
        from vj.commands.replay import rendered_steps, rerender_steps

        frames, blacks = [], []
        steps = rerender_steps(self.recording, self.presets, self.session)
        for step, rgb in rendered_steps(self.session, steps, segment.start, segment.end):
            if step.index < segment.first:
                continue
            frames.append(rgb)
            blacks.append(step.black)
            if len(frames) == chunk:
                yield np.stack(frames), np.array(blacks)
                frames, blacks = [], []
        if frames:
            yield np.stack(frames), np.array(blacks)
