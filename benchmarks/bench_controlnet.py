"""ControlNet cost: per-frame time of the engine with 0, 1 and 2 ControlNets, and its ratio to the frame without.

    .venv/bin/python benchmarks/bench_controlnet.py --model tiny --width 256 --height 256 --steps 1 --frames 20
    .venv/bin/python benchmarks/bench_controlnet.py --model arch:sd-turbo --vae taesd --frames 3 --warmup 1

One FrameEngine at WxH (`--steps` denoising steps), a fixed prompt, img2img at strength 0.5 on the previous
(slightly moved) frame as `vj bench` renders. For each net count: the engine is reset, steered by that many nets
(random weights: `tiny` for --model tiny, `arch:sd21` for arch:sd-turbo), each with its own random control map at
the frame's size, scale 1 over all steps; the txt2img first frame and `--warmup` frames are rendered untimed, then
`--frames` frames are timed one by one. Reported: median ms per frame and per frame's UNet stage (ControlNets
included), and their ratio to 0 nets. With `--preprocessor canny` or `depth` each net's map is made from the
previous frame (moved by the frame's motion) every frame, as `image: previous` does, so the preprocessor's cost is
in the frame (`depth` loads the depth model that fits --model: tiny, or Depth Anything small's architecture).
"""

import argparse
import json
import statistics
import time

import torch

from vj.engine.devices import synchronize
from vj.engine.diffusion.control_maps import ControlInput
from vj.engine.diffusion.controlnet import load_controlnet
from vj.engine.diffusion.frames import EngineSettings, FrameEngine, FrameRequest, StageTimer
from vj.engine.diffusion.models import load_components
from vj.engine.motion import Motion

NETS = {"tiny": "tiny", "arch:sd-turbo": "arch:sd21"}  # the ControlNet that fits each model


DEPTH = {"tiny": "tiny", "arch:sd-turbo": "arch:depth-anything-small"}  # the depth model that goes with each


def request(i, controls=()):
    return FrameRequest(
        i,
        (("a misty forest", 1.0), ("sparks", 0.3)),
        strength=0.5,
        motion=Motion(1.0, 0.5, 0.5, 2.0, 2.0),
        controls=controls,
    )


def controls(c, net_name, count, width, height, preprocessor):
    """({name: net}, ControlInputs) of `count` nets, each with its own random weights and random control map (or,
    with a preprocessor, its map made from the moved previous frame)."""
    nets, inputs = {}, []
    for k in range(count):
        nets[f"net{k}"] = load_controlnet(net_name, c.device, c.dtype, seed=k)
        image = torch.randint(0, 256, (height, width, 3), generator=torch.Generator().manual_seed(100 + k))
        previous = preprocessor != "none"
        image = None if previous else image.to(torch.uint8).numpy()
        inputs.append(ControlInput(f"net{k}", 1.0, image, previous=previous, preprocessor=preprocessor))
    return nets, inputs


def time_frames(engine, controls, warmup, frames):
    """(per-frame seconds, per-frame UNet-stage seconds) of `frames` frames after the first and `warmup` frames."""
    device = engine.c.device
    engine.reset()
    engine.timer = StageTimer(device)
    for i in range(1 + warmup):  # the txt2img first frame, then img2img warm-up
        engine.render(request(i, controls))
    totals, unets = [], []
    for i in range(frames):
        engine.timer.totals.clear()
        synchronize(device)
        start = time.perf_counter()
        engine.render(request(1 + warmup + i, controls))
        synchronize(device)
        totals.append(time.perf_counter() - start)
        unets.append(engine.timer.totals.get("unet", 0.0))
    return totals, unets


def run(args):
    net_counts = [int(n) for n in args.nets.split(",")]
    net_name = args.net or NETS.get(args.model)
    if net_name is None:
        raise SystemExit(f"no ControlNet known for --model {args.model}: pass --net")
    c = load_components(args.model, args.vae, args.device, args.dtype)
    engine = FrameEngine(c, EngineSettings(width=args.width, height=args.height, steps=args.steps))
    engine.controlnets, inputs = controls(c, net_name, max(net_counts), args.width, args.height, args.preprocessor)
    if args.preprocessor == "depth":
        from vj.engine.depth.models import load_depth_model

        engine.depth = load_depth_model(DEPTH.get(args.model, "tiny"), c.device, c.dtype, args.depth_input_size).metres
    rows = []
    for count in net_counts:
        totals, unets = time_frames(engine, tuple(inputs[:count]), args.warmup, args.frames)
        rows.append(
            {
                "nets": count,
                "frame_ms": statistics.median(totals) * 1e3,
                "frame_ms_min": min(totals) * 1e3,
                "frame_ms_max": max(totals) * 1e3,
                "unet_ms": statistics.median(unets) * 1e3,
            }
        )
    base = next((r for r in rows if r["nets"] == 0), None)
    for r in rows:
        r["ratio"] = r["frame_ms"] / base["frame_ms"] if base else None
        r["unet_ratio"] = r["unet_ms"] / base["unet_ms"] if base else None
    return {
        "model": args.model,
        "vae": args.vae,
        "controlnet": net_name,
        "controlnet_params_m": sum(p.numel() for p in engine.controlnets["net0"].parameters()) / 1e6
        if engine.controlnets
        else None,
        "preprocessor": args.preprocessor,
        "unet_params_m": sum(p.numel() for p in c.unet.parameters()) / 1e6,
        "device": str(c.device),
        "dtype": str(c.dtype),
        "size": f"{args.width}x{args.height}",
        "steps": args.steps,
        "frames": args.frames,
        "warmup": args.warmup,
        "torch_threads": torch.get_num_threads(),
        "results": rows,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="tiny", help="tiny or arch:sd-turbo (or any model, with --net)")
    parser.add_argument("--net", default=None, help="the ControlNet: tiny, arch:sd21, a hub id (default: fits --model)")
    parser.add_argument("--vae", default="taesd", help="as vj bench's --vae (taesd keeps the VAE cheap)")
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--steps", type=int, default=1, help="denoising steps (1, 2, 4 ...)")
    parser.add_argument("--frames", type=int, default=20, help="timed frames per net count")
    parser.add_argument("--warmup", type=int, default=3, help="untimed img2img frames after the first")
    parser.add_argument("--nets", default="0,1,2", help="net counts, comma-separated")
    parser.add_argument("--preprocessor", default="none", choices=("none", "canny", "depth"))
    parser.add_argument("--depth-input-size", type=int, default=266, help="the depth model's input size (depth)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = run(args)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(
        f"{result['model']} ({result['vae']} VAE) + {result['controlnet']} nets (preprocessor "
        f"{result['preprocessor']}) on {result['device']} "
        f"{result['dtype']}, {result['size']}, {result['steps']} step(s), median of {result['frames']} frames"
    )
    for r in result["results"]:
        ratio = f"{r['ratio']:.2f}x" if r["ratio"] is not None else "-"
        unet_ratio = f"{r['unet_ratio']:.2f}x" if r["unet_ratio"] is not None else "-"
        print(
            f"  {r['nets']} net(s): {r['frame_ms']:8.1f} ms/frame ({ratio})  "
            f"unet stage {r['unet_ms']:8.1f} ms ({unet_ratio})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
