"""3D depth warp (issue 19): per-frame cost of a depth map in metres and of pytti's 3D warp by it.

    .venv/bin/python benchmarks/bench_depth.py --frames 5                          # CPU, float32
    .venv/bin/python benchmarks/bench_depth.py --device cuda --dtype float16 --frames 50

- depth: `DepthModel.metres` of a --size x --size frame with `--model` (default arch:depth-anything-small:
  Depth-Anything-V2-Small's architecture with random weights, the compute of the real model, no download), at
  each of --input-sizes (the side the model sees, 518 as the checkpoints' processor, and a smaller one), under
  inference_mode as the 3D warp uses it; with --grad also forward and backward to the pixels (a loss on depth);
- warp: `warp_3d` of the frame by that depth (vj.engine.depth.camera: `depth_units` then the warp, translate_z 10
  and a small rotation, pytti's default camera), measured when that module has it;
- frame: both, the cost a 3D-animated frame adds.

Per-frame times after --warmup frames, in ms (median and mean); on CUDA each frame is synchronized, so the wall time
is the GPU's. Prints one JSON object.
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vj.engine.depth.models import load_depth_model, model_input_size  # noqa: E402
from vj.engine.devices import pick_device, resolve_dtype, synchronize  # noqa: E402


def timed(work, frames, warmup, device):
    """Median, mean, min and max milliseconds of `work()` over `frames` calls after `warmup` calls (each
    synchronized: on a GPU the wall time is the device's). bench_preprocessors.py times with it too."""
    for _ in range(warmup):
        work()
    synchronize(device)
    times = []
    for _ in range(frames):
        start = time.perf_counter()
        work()
        synchronize(device)
        times.append((time.perf_counter() - start) * 1000)
    return {
        "median_ms": round(statistics.median(times), 3),
        "mean_ms": round(statistics.fmean(times), 3),
        "min_ms": round(min(times), 3),
        "max_ms": round(max(times), 3),
    }


def camera_warp(size):
    """(warp(image, metres), None), or (None, why not) when vj.engine.depth.camera lacks what is needed."""
    try:
        from vj.engine.depth.camera import Camera, Motion3D, depth_units, warp_3d
    except ImportError as exc:
        return None, f"not measured: {exc}"
    camera = Camera(field_of_view=60, near_plane=1, far_plane=10000, lock_camera=True, height=size)
    motion = Motion3D(translate_x=0, translate_y=0, translate_z=10, rotation=(1.0, 0.0, 0.01, 0.0))

    def warp(image, metres):
        return warp_3d(image, depth_units(metres, camera), motion, camera, infill="mirror", sampling="bilinear")

    return warp, None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="arch:depth-anything-small", help="a depth model name (tiny, arch:..., id)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto", help="auto (float16 on CUDA, float32 elsewhere), float32, ...")
    parser.add_argument("--size", type=int, default=512, help="frame width and height")
    parser.add_argument("--input-sizes", default="518,266", help="comma-separated input sizes of the depth model")
    parser.add_argument("--frames", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--grad", action="store_true", help="also time forward + backward to the pixels")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (CPU)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    image = torch.rand(1, 3, args.size, args.size, generator=torch.Generator().manual_seed(0)).to(device, dtype)
    warp, why = camera_warp(args.size)
    result = {
        "model": args.model,
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"cpu ({torch.get_num_threads()} threads)",
        "dtype": str(dtype)[6:],
        "torch": torch.__version__,
        "size": args.size,
        "frames": args.frames,
    }
    sizes = [int(s) for s in args.input_sizes.split(",") if s.strip()]
    model = load_depth_model(args.model, device, dtype, input_size=sizes[0])
    result["parameters_m"] = round(sum(p.numel() for p in model.model.parameters()) / 1e6, 2)
    for input_size in sizes:
        model.input_size = input_size
        key = f"input_{input_size}"
        record = {"model_input": list(model_input_size(args.size, args.size, input_size, model.patch_size))}
        with torch.inference_mode():
            record["depth"] = timed(lambda: model.metres(image), args.frames, args.warmup, device)
            if warp is not None:
                metres = model.metres(image)
                record["warp"] = timed(lambda: warp(image, metres), args.frames, args.warmup, device)
                record["frame"] = timed(lambda: warp(image, model.metres(image)), args.frames, args.warmup, device)
        if args.grad:
            pixels = image.clone().requires_grad_(True)

            def step():
                pixels.grad = None
                model.metres(pixels).mean().backward()

            record["depth_forward_backward"] = timed(step, args.frames, args.warmup, device)
        result[key] = record
    if warp is None:
        result["warp"] = why
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
