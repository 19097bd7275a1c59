"""Analysis cost on one core: 8 Butterworth bands of order 5 on 48 kHz audio (octave bands 50..6400 Hz).

Times the filter bank (filters, decimation pyramid, detectors) plus the envelopes (release, attack,
auto gain): (a) in 48000-sample blocks, as x real time; (b) in live-sized blocks (--live, 512), as the
share of one core and the time per block. The figures are CPU time of the analysing thread (what the
work costs a core, even on a busy machine), wall time in parentheses; best of --repeat passes over the
same audio, after a warm-up block. The first block's time (numba compiling, or loading the compiled
code from its cache) is reported apart. `AudioAnalyzer.feed` is timed too: it adds whatever else the
analyzer computes.

Run: python benchmarks/bench_audio.py [--seconds 30] [--repeat 3] [--cold]
"""

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("NUMBA_NUM_THREADS", "1")
if "--cold" in sys.argv:  # before numba is imported: an empty cache, so the first block compiles
    os.environ["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="vj-bench-numba-")

import numpy as np  # noqa: E402

from vj.audio import ArraySource, AudioAnalyzer, Band, FilterBank  # noqa: E402
from vj.audio import kernels  # noqa: E402
from vj.audio.envelope import EnvelopeBank  # noqa: E402

SR = 48000
CENTERS = (50, 100, 200, 400, 800, 1600, 3200, 6400)  # octave bands, width 0.7 x center
BANDS = [Band(f"b{i}", c, 0.7 * c, order=5) for i, c in enumerate(CENTERS)]


def bank_feed():
    """A fresh filter bank and envelopes, as one feed(block) function."""
    bank = FilterBank(BANDS, SR)
    envelopes = EnvelopeBank(BANDS, bank.control_rate)
    return lambda block: envelopes.process(bank.process(block))


def analyzer_feed():
    return AudioAnalyzer(ArraySource(np.zeros(SR, np.float32), SR), BANDS).feed


def best_time(make_feed, x, block, repeat):
    """Best (CPU time of this thread, wall time) of `repeat` passes over x in blocks, each with a fresh feed."""
    cpu = wall = float("inf")
    for _ in range(repeat):
        feed = make_feed()
        start, start_cpu = time.perf_counter(), time.thread_time()
        for pos in range(0, len(x), block):
            feed(x[pos : pos + block])
        cpu, wall = min(cpu, time.thread_time() - start_cpu), min(wall, time.perf_counter() - start)
    return cpu, wall


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--block", type=int, default=48000, help="samples per large block")
    parser.add_argument("--live", type=int, default=512, help="samples per live-sized block")
    parser.add_argument("--cold", action="store_true", help="compile into an empty numba cache (first start)")
    args = parser.parse_args()
    x = (np.random.default_rng(0).standard_normal(int(args.seconds * SR)) * 0.1).astype(np.float32)

    start = time.perf_counter()
    bank_feed()(x[: args.block])
    first = time.perf_counter() - start
    compiled = sum(
        sum(k.stats.cache_misses.values()) for k in (kernels.cascade(5), kernels.cascade(3), kernels.envelopes)
    )
    print(
        f"first block: {first:.2f} s ({'compiled' if compiled else 'loaded from the numba cache'}; "
        f"NUMBA_CACHE_DIR={os.environ.get('NUMBA_CACHE_DIR', 'unset')})"
    )
    print(
        f"8 bands, order 5, {SR // 1000} kHz; decimation per band "
        f"{[2**k for k in FilterBank(BANDS, SR).levels]}; best of {args.repeat}, one core"
    )
    for name, make_feed in (("bank + envelopes", bank_feed), ("AudioAnalyzer.feed", analyzer_feed)):
        big, big_wall = best_time(make_feed, x, args.block, args.repeat)
        live, live_wall = best_time(make_feed, x, args.live, args.repeat)
        blocks = -(-len(x) // args.live)
        print(
            f"{name}: block {args.block}: {args.seconds / big:.0f}x real time ({big / args.seconds * 1e3:.2f} ms "
            f"per second of audio; wall {args.seconds / big_wall:.0f}x); block {args.live}: "
            f"{live / args.seconds * 100:.2f}% of a core ({live / blocks * 1e3:.3f} ms per block; wall "
            f"{live_wall / args.seconds * 100:.2f}%)"
        )


if __name__ == "__main__":
    main()
