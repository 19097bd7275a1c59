"""ControlNet preprocessors: per-frame cost of `canny` (vj.engine.diffusion.preprocessors) against cv2.Canny, and of
`depth_map` alone.

    .venv/bin/python benchmarks/bench_preprocessors.py --frames 50                       # CPU
    .venv/bin/python benchmarks/bench_preprocessors.py --device cuda --dtype float16 --frames 200

At each --sizes side (square pictures): a synthetic picture (smooth colour gradients, blurred seeded noise, a bright
square and disc: edges of all strengths and directions) as (1, 3, S, S) float in [0, 1] on --device in --dtype. canny's
hysteresis steps grow with the longest chain of weak edge pixels, so its time depends on the picture a little.
Timed, in ms (median, min, max over --frames calls after --warmup, each synchronized):
- canny: `canny(picture, --low, --high)`, the edge map on the device; `edge_fraction` is the share of edge pixels;
- cv2: `cv2.Canny` of the same picture as HxWx3 uint8 already on the host (when cv2 is importable), and
  cv2_roundtrip: the same from the device tensor to an edge map back on it (download, uint8, cv2, upload), what
  using OpenCV would cost the engine; `identical` says whether cv2's edges equal canny's;
- depth_map: `depth_map` of a (1, 1, S, S) depth in metres (the depth model's cost is bench_depth.py's).
Prints one JSON object.
"""

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_depth import timed  # noqa: E402
from vj.engine.devices import pick_device, resolve_dtype  # noqa: E402
from vj.engine.diffusion.preprocessors import canny, depth_map  # noqa: E402

try:
    import cv2
except ImportError:  # OpenCV is only a test dependency: without it canny is timed alone
    cv2 = None


def picture(size, seed=0):
    """(1, 3, size, size) float32 in [0, 1] on the CPU: gradients, blurred noise, a square and a disc."""
    generator = torch.Generator().manual_seed(seed)
    ramp = torch.linspace(0, 1, size)
    yy, xx = ramp.view(-1, 1).expand(size, size), ramp.view(1, -1).expand(size, size)
    image = torch.stack([0.8 * xx, 0.7 * yy, (xx + yy) / 2])[None]
    noise = torch.rand(1, 3, size, size, generator=generator)
    image = image + 0.5 * (F.avg_pool2d(noise, 5, stride=1, padding=2, count_include_pad=False) - 0.5)
    image[..., size // 8 : size // 2, size // 8 : size // 2] = torch.tensor([1.0, 0.1, 0.15]).view(1, 3, 1, 1)
    disc = (xx - 0.68) ** 2 + (yy - 0.66) ** 2 < 0.18**2
    image = torch.where(disc, torch.tensor([0.1, 0.8, 0.35]).view(1, 3, 1, 1), image)
    return image.clamp(0, 1)


def cv2_roundtrip(image, low, high):
    """The device picture's edges by cv2.Canny, as canny's map back on the device."""
    host = (image[0].float().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).contiguous().cpu().numpy()
    edges = torch.from_numpy(cv2.Canny(host, low, high)).to(image.device)
    return (edges > 0).float()[None, None].expand(-1, 3, -1, -1)


def run(args):
    device = pick_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    rows = []
    for size in (int(s) for s in args.sizes.split(",") if s.strip()):
        image = picture(size).to(device, dtype)
        edges = canny(image, args.low, args.high)
        row = {
            "size": size,
            "edge_fraction": round(edges[0, 0].mean().item(), 4),
            "canny": timed(lambda: canny(image, args.low, args.high), args.frames, args.warmup, device),
        }
        if cv2 is not None:
            host = (image[0].float() * 255).round().to(torch.uint8).permute(1, 2, 0).contiguous().cpu().numpy()
            row["cv2"] = timed(lambda: cv2.Canny(host, args.low, args.high), args.frames, args.warmup, device)
            row["cv2_roundtrip"] = timed(
                lambda: cv2_roundtrip(image, args.low, args.high), args.frames, args.warmup, device
            )
            row["identical"] = bool(torch.equal(cv2_roundtrip(image, args.low, args.high), edges))
        metres = (1 + 9 * torch.rand(1, 1, size, size, generator=torch.Generator().manual_seed(1))).to(device, dtype)
        row["depth_map"] = timed(lambda: depth_map(metres), args.frames, args.warmup, device)
        rows.append(row)
    return {
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"{device.type} ({torch.get_num_threads()} threads)",
        "dtype": str(dtype)[6:],
        "torch": torch.__version__,
        "opencv": cv2.__version__ if cv2 is not None else None,
        "low": args.low,
        "high": args.high,
        "frames": args.frames,
        "warmup": args.warmup,
        "results": rows,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, mps or auto")
    parser.add_argument("--dtype", default="float32", help="the picture's dtype: float32, float16, auto ...")
    parser.add_argument("--sizes", default="256,512", help="comma-separated picture sides")
    parser.add_argument("--low", type=float, default=100.0, help="canny's low threshold (OpenCV's units)")
    parser.add_argument("--high", type=float, default=200.0, help="canny's high threshold")
    parser.add_argument("--frames", type=int, default=50, help="timed calls per measurement")
    parser.add_argument("--warmup", type=int, default=5, help="untimed calls before each measurement")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (CPU)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(json.dumps(run(args), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
