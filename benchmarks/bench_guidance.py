"""CLIP guidance cost: diffusion frames with and without one guided step, and pixel-engine frames per second.

    .venv/bin/python benchmarks/bench_guidance.py --model tiny --size 256 --cutouts 16 --frames 10
    .venv/bin/python benchmarks/bench_guidance.py --model arch:sd-turbo --size 512 --cutouts 32 --device cuda
    .venv/bin/python benchmarks/bench_guidance.py --pixels --model tiny --size 256 --steps-per-frame 5

The objective is one text prompt on `--cutouts` cutouts per perceptor; `--model tiny` uses the tiny perceptor,
`arch:...` the real ViT-B-32 architecture with random weights (the compute of the real thing). Timed after two
warm-up frames; on CUDA every frame ends with its host copy, so the wall time is the GPU's.
"""

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vj.engine.devices import pick_device  # noqa: E402
from vj.engine.diffusion.frames import EngineSettings, FrameEngine, FrameRequest  # noqa: E402
from vj.engine.guidance.objective import CutoutSettings, GuidanceRequest, Objective, Target  # noqa: E402
from vj.engine.diffusion.models import load_components  # noqa: E402
from vj.engine.motion import Motion  # noqa: E402
from vj.show.engines import load_perceptors  # noqa: E402


def frames_per_second(engine, guidance, frames):
    requests = [
        FrameRequest(
            index=i, prompts=(("a forest at dawn", 1.0),), strength=0.5, motion=Motion(zoom_x=2), guidance=guidance
        )
        for i in range(frames + 2)
    ]
    for request in requests[:2]:
        engine.render(request)
    start = time.perf_counter()
    for request in requests[2:]:
        engine.render(request)
    return frames / (time.perf_counter() - start)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--cutouts", type=int, default=16)
    parser.add_argument("--frames", type=int, default=10)
    parser.add_argument("--guidance-steps", type=int, default=1)
    parser.add_argument("--pixels", action="store_true", help="the pixel engine instead of diffusion")
    parser.add_argument("--steps-per-frame", type=int, default=5)
    args = parser.parse_args(argv)
    device = pick_device(args.device)
    perceptors = load_perceptors(["ViT-B-32/openai"], args.model, device)
    objective = Objective(perceptors, cutouts=CutoutSettings(count=args.cutouts))
    guidance = GuidanceRequest(targets=(Target("text", "a red balloon", 1.0),), steps=args.guidance_steps)
    result = {
        "model": args.model,
        "device": str(device),
        "size": args.size,
        "cutouts": args.cutouts,
        "perceptor_input": perceptors[0].input_size,
    }
    if args.pixels:
        from vj.engine.pixels.engine import PixelEngine, PixelSettings

        for model in ("unlimited_palette", "limited_palette"):
            settings = PixelSettings(
                model=model, width=args.size, height=args.size, steps_per_frame=args.steps_per_frame
            )
            engine = PixelEngine(settings, objective, device=device)
            result[f"{model}_fps"] = round(frames_per_second(engine, guidance, args.frames), 2)
        result["steps_per_frame"] = args.steps_per_frame
    else:
        c = load_components(args.model, device=args.device)
        settings = EngineSettings(width=args.size, height=args.size, steps=1)
        plain = frames_per_second(FrameEngine(c, settings), None, args.frames)
        guided = frames_per_second(FrameEngine(c, settings, objective=objective), guidance, args.frames)
        result.update(
            guidance_steps=args.guidance_steps,
            plain_fps=round(plain, 2),
            guided_fps=round(guided, 2),
            guided_step_ms=round(1000 * (1 / guided - 1 / plain), 1),
        )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
