"""Evaluation cost per expression call, on one core.

Run: python benchmarks/bench_expressions.py
"""

import timeit

from vj.language.expressions import compile_expression

VARS = ["t", "frame", "fLo", "fHi", "fLo_prev", "fHi_prev"]
CASES = [
    "10*fHi",
    "fLo/(fLo + fHi)",
    "0.5 + 0.3*sin(t*2*pi) * fLo",
    "clamp(1 - fLo_prev) if fHi > 0.2 else smoothstep(0, 1, fLo)",
]


def main():
    env = {"t": 1.25, "frame": 30.0, "fLo": 0.4, "fHi": 0.7, "fLo_prev": 0.3, "fHi_prev": 0.6}
    for source in CASES:
        expr = compile_expression(source, VARS)
        n = 200_000
        best = min(timeit.repeat(lambda: expr(env), number=n, repeat=5)) / n
        print(f"{best * 1e6:.3f} us  {source}")


if __name__ == "__main__":
    main()
