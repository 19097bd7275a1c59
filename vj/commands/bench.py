"""`vj bench`: per-stage frame times of the engine, and the bare UNet + VAE calls for comparison."""

import json
import time

import torch

from vj.engine.devices import synchronize
from vj.engine.diffusion.frames import EngineSettings, FrameEngine, FrameRequest, StageTimer, decode
from vj.engine.diffusion.models import compile_components, load_components
from vj.engine.motion import Motion


def bare_calls(engine, frames):
    """Seconds per frame of just the VAE encode, UNet call(s) and decode the engine makes."""
    c, s = engine.c, engine.settings
    image = engine.previous
    cond = engine.conditioning(FrameRequest(0, (("a test", 1.0),)))
    t = torch.tensor(500, device=c.device)

    def one_frame(image):
        latents = engine.encode(image, None if c.is_tiny_vae else torch.Generator(device=c.device).manual_seed(0))
        for _ in range(s.steps):
            c.unet(latents, t, encoder_hidden_states=cond, return_dict=False)
        return decode(c, latents)

    with torch.inference_mode():
        image = one_frame(image)  # warm-up: a compiled UNet specializes once more for these inputs
        synchronize(c.device)
        start = time.perf_counter()
        for _ in range(frames):
            image = one_frame(image)
        synchronize(c.device)
    return (time.perf_counter() - start) / frames


def run(model, vae, device, width, height, frames, steps, compile=False, dtype="auto"):
    components = load_components(model, vae, device, dtype)
    if compile:
        compile_components(components)
    timer = StageTimer(components.device)
    engine = FrameEngine(components, EngineSettings(width=width, height=height, steps=steps))

    def request(i):
        return FrameRequest(
            i, (("a misty forest", 1.0), ("sparks", 0.3)), strength=0.5, motion=Motion(1.0, 0.5, 0.5, 2.0, 2.0)
        )

    for i in range(3):  # warm-up (and the first txt2img frame)
        engine.render(request(i))
    synchronize(components.device)
    start = time.perf_counter()
    for i in range(frames):
        engine.render(request(3 + i))
    synchronize(components.device)
    frame_time = (time.perf_counter() - start) / frames
    timer.totals.clear()
    engine.timer = timer
    for i in range(frames):
        engine.render(request(3 + frames + i))
    stages = {k: v / frames * 1e3 for k, v in timer.totals.items()}
    bare = bare_calls(engine, frames)
    return {
        "model": model,
        "vae": vae,
        "device": str(components.device),
        "dtype": str(components.dtype),
        "size": f"{width}x{height}",
        "steps": steps,
        "frames": frames,
        "fps": 1.0 / frame_time,
        "frame_ms": frame_time * 1e3,
        "stage_ms": stages,
        "bare_unet_vae_ms": bare * 1e3,
        "overhead_ratio": frame_time / bare,
        "torch_threads": torch.get_num_threads(),
        "compiled": compile,
    }


def main(args):
    result = run(
        args.model, args.vae, args.device, args.width, args.height, args.frames, args.steps, args.compile, args.dtype
    )
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(
        f"{result['model']} ({result['vae']} VAE) on {result['device']} {result['dtype']}, {result['size']}, "
        f"{result['steps']} step(s): {result['fps']:.2f} fps ({result['frame_ms']:.1f} ms/frame)"
    )
    for name, ms in result["stage_ms"].items():
        print(f"  {name:<13}{ms:9.2f} ms")
    print(f"  bare encode+UNet+decode {result['bare_unet_vae_ms']:.1f} ms; frame/bare = {result['overhead_ratio']:.3f}")
    return 0
