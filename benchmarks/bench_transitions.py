"""Latent-blend transitions: compute time, smoothness against a conditioning crossfade, seams in the stream, and
trigger-to-first-transition-frame latency.

    .venv/bin/python benchmarks/bench_transitions.py --model tiny --size 256 --quality medium --frames 30

- compute: a tree (keyframes + branches) for one scene change, cold (nothing cached) and from the disk cache;
- smoothness (largest frame-to-frame change / mean change, 1 = even; `image_difference`) of the transition's
  frames: the tree's leaves played over `--frames` frames, against a plain conditioning crossfade (txt2img of
  the slerp mix at each frame, same seed); and the same two through the stream (img2img frame after frame,
  strength 0.5), with the change at both seams against the mean change inside the transition;
- trigger latency: from a scene change applied by the engine thread to its first frame out, with the transition
  in the memory cache, only on disk (a new process), and not computed (the crossfade plays at once; the worker's
  time to have it ready is reported too).
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from vj.engine.diffusion.conditioning import ConditioningCache, crossfade, prompt_conditioning
from vj.engine.diffusion.frames import EngineSettings, FrameEngine, FrameRequest, image_to_tensor
from vj.engine.diffusion.models import load_components
from vj.engine.transitions.cache import TransitionCache
from vj.engine.transitions.latent_blend import Trajectories, image_difference, smoothness
from vj.show.director import Director
from vj.config.loading import load_preset
from vj.show.timeline import ScenePosition
from vj.show.blends import Transitions, TransitionWorker, tree_plan

PRESET = """\
scenes: a misty forest at dawn:1 || a neon city street at night:1
transition_mode: latent_blend
transition_quality: QUALITY
transition_steps: STEPS
width: SIZE
height: SIZE
seed: 7
"""


def timed(fn):
    started = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - started


def tensor(rgb, c):
    return image_to_tensor(rgb, c.device, torch.float32)


def stream_frames(c, preset, director, frames, lead=6, strength=0.5):
    """(frames out, img2img inputs): the stream rendered through `lead` frames of scene A, the transition over
    `frames` frames, `lead` frames of B. The inputs (previous frame pulled toward the guide) are what the
    transition changes directly, whatever the model does with them."""
    engine = FrameEngine(c, EngineSettings(width=preset.width, height=preset.height, steps=1))
    inputs = []
    encode = engine.encode
    engine.encode = lambda image, generator: (inputs.append(image.float().clone()), encode(image, generator))[1]
    out = []
    total = lead + frames + lead
    for k in range(total):
        if k < lead:
            position = ScenePosition(0)
        elif k < lead + frames:
            position = ScenePosition(1, 0, (k - lead) / frames)
        else:
            position = ScenePosition(1)
        request = director.request(k, k / 24, {}, position)
        request = FrameRequest(**{**request.__dict__, "strength": strength})
        out.append(tensor(engine.render(request), c))
    return out, [inputs[0]] + inputs  # frame 0 is txt2img (no input): count it as its successor's


def seams(frames, lead, count):
    changes = [image_difference(a, b) for a, b in zip(frames, frames[1:])]
    inside = changes[lead : lead + count - 1]
    return {
        "start_seam": round(changes[lead - 1], 4),
        "end_seam": round(changes[lead + count - 1], 4),
        "inside_mean": round(float(np.mean(inside)), 4),
        "inside_max": round(float(np.max(inside)), 4),
        "outside_mean": round(float(np.mean(changes[: lead - 1] + changes[lead + count :])), 4),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--quality", default="medium")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--frames", type=int, default=30)
    args = parser.parse_args(argv)
    c = load_components(args.model, device=args.device)
    result = {
        "model": args.model,
        "device": args.device,
        "size": args.size,
        "quality": args.quality,
        "steps": args.steps,
        "frames": args.frames,
    }
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bench.yaml"
        path.write_text(
            PRESET.replace("QUALITY", args.quality).replace("STEPS", str(args.steps)).replace("SIZE", str(args.size))
        )
        preset = load_preset(path)
        cache_dir = Path(folder) / "cache"
        transitions = Transitions(c, preset, TransitionCache(cache_dir))
        transitions.compute(1, 0)  # warm-up (another pair): first calls of the model
        leaves, cold = timed(lambda: transitions.compute(0, 1))
        fresh = Transitions(c, preset, TransitionCache(cache_dir))
        _, disk = timed(lambda: fresh.compute(0, 1))
        result["compute_s"] = {
            "cold": round(cold, 3),
            "from_disk": round(disk, 4),
            "leaves": len(leaves),
            "unet_calls": tree_plan(preset).unet_calls(),
        }

        # smoothness of the transition's own frames: the tree vs a crossfade of txt2img frames, same seed
        played = [transitions.guide(0, 1, k / (args.frames - 1))[0] for k in range(args.frames)]
        tree_frames = [tensor(f, c) for f in played]
        conds = ConditioningCache(c.text_encoder, c.tokenizer, c.device)
        cond_a, cond_b = (prompt_conditioning(conds, transitions._setup.rest_prompts(s)) for s in (0, 1))
        trajectories = Trajectories(c, preset.width, preset.height)
        fade_frames = [
            trajectories.endpoint(
                crossfade(cond_a, cond_b, k / (args.frames - 1), "slerp"), preset.seed, args.steps
            ).image
            for k in range(args.frames)
        ]
        result["smoothness_max_over_mean"] = {
            "latent_blend_tree": round(smoothness(tree_frames)[0], 2),
            "conditioning_crossfade": round(smoothness(fade_frames)[0], 2),
        }

        # the same scene change through the stream: seams against the inside
        lead = 6
        result["stream"] = {}
        for name, director in (
            ("latent_blend", Director(preset, transitions=transitions)),
            ("crossfade", Director(preset)),
        ):
            out, inputs = stream_frames(c, preset, director, args.frames, lead)
            window = slice(lead - 1, lead + args.frames + 1)
            result["stream"][name] = {
                "frames": {**seams(out, lead, args.frames), "smoothness": round(smoothness(out[window])[0], 2)},
                "inputs": {**seams(inputs, lead, args.frames), "smoothness": round(smoothness(inputs[window])[0], 2)},
            }

        # trigger latency: the first frame of a scene change, cached in memory, on disk only, not computed
        def first_frame(t):
            engine = FrameEngine(c, EngineSettings(width=preset.width, height=preset.height, steps=1))
            engine.render(FrameRequest(0, (("a misty forest at dawn", 1.0),), seed=7))
            director = Director(preset, transitions=t)
            started = time.perf_counter()
            engine.render(director.request(1, 0.0, {}, ScenePosition(1, 0, 0.05)))
            return time.perf_counter() - started, director.blending

        memory, how_memory = first_frame(transitions)
        on_disk, how_disk = first_frame(Transitions(c, preset, TransitionCache(cache_dir)))
        uncached_transitions = Transitions(c, preset, TransitionCache(False))
        uncached, how_uncached = first_frame(uncached_transitions)
        worker = TransitionWorker(uncached_transitions)
        _, ready_after = timed(lambda: (worker.want([(0, 1)]), worker.wait_idle(600)))
        worker.close()
        result["trigger_to_first_frame_ms"] = {
            "memory_cache": [round(memory * 1000, 1), how_memory],
            "disk_cache": [round(on_disk * 1000, 1), how_disk],
            "not_computed": [round(uncached * 1000, 1), how_uncached],
            "worker_ready_after_s": round(ready_after, 2),
        }
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
