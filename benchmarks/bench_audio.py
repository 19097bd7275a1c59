"""Analysis throughput: 8 Butterworth bands of order 5 on 48 kHz audio, on one core.

Run: python benchmarks/bench_audio.py [--seconds 60]
"""

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from vj.audio import ArraySource, AudioAnalyzer, Band  # noqa: E402

CENTERS = (50, 100, 200, 400, 800, 1600, 3200, 6400)  # octave bands, width 0.7 x center


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--block", type=int, default=48000, help="samples per block (live input uses ~512)")
    args = parser.parse_args()
    sr = 48000
    bands = [Band(f"b{i}", c, 0.7 * c, order=5) for i, c in enumerate(CENTERS)]
    x = (np.random.default_rng(0).standard_normal(int(args.seconds * sr)) * 0.1).astype(np.float32)
    best = float("inf")
    for _ in range(3):
        analyzer = AudioAnalyzer(ArraySource(x, sr), bands)
        start = time.perf_counter()
        for pos in range(0, len(x), args.block):
            analyzer.feed(x[pos:pos + args.block])
        best = min(best, time.perf_counter() - start)
    print(f"8 bands, order 5, 48 kHz, block {args.block}: {args.seconds / best:.0f}x real time "
          f"({best / args.seconds * 1e3:.2f} ms per second of audio); decimation per band: "
          f"{[2 ** k for k in analyzer.bank.levels]}")


if __name__ == "__main__":
    main()
