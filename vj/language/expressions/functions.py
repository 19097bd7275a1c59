"""The functions and constants an expression may use: pytti's set plus a few VJ helpers."""

import math

# pytti exposed every public name of `math`; these are the numeric ones that make sense per frame.
_MATH_FUNCTIONS = (
    "acos acosh asin asinh atan atan2 atanh ceil copysign cos cosh degrees erf erfc exp expm1 "
    "fabs floor fmod gamma hypot isfinite isinf isnan ldexp lgamma log log10 log1p log2 "
    "radians remainder sin sinh sqrt tan tanh trunc"
).split()


def clamp(x, lo=0.0, hi=1.0):
    """x limited to [lo, hi]."""
    return lo if x < lo else hi if x > hi else x


def lerp(a, b, x):
    """Linear mix from a (x=0) to b (x=1)."""
    return a + (b - a) * x


def smoothstep(edge0, edge1, x):
    """Hermite ramp from 0 at edge0 to 1 at edge1 (GLSL semantics)."""
    if edge0 == edge1:
        return 0.0 if x < edge0 else 1.0
    u = clamp((x - edge0) / (edge1 - edge0))
    return u * u * (3.0 - 2.0 * u)


def step(edge, x):
    """0 below edge, 1 at or above it (GLSL semantics)."""
    return 0.0 if x < edge else 1.0


def saw(x):
    """Rising ramp 0..1 with period 1: `saw(t*2)` is a 2 Hz LFO."""
    return x % 1.0


def tri(x):
    """Triangle 0..1..0 with period 1."""
    return 1.0 - abs(2.0 * (x % 1.0) - 1.0)


def sqr(x, duty=0.5):
    """Square wave with period 1: 1 for the first `duty` of each period, else 0."""
    return 1.0 if x % 1.0 < duty else 0.0


def osc(x):
    """Sine LFO in 0..1 with period 1, starting at 0.5 and rising."""
    return 0.5 + 0.5 * math.sin(2.0 * math.pi * x)


def _float_result(function):
    """`function` with its result made a float: Python's ceil, floor, trunc and round give integers and
    isfinite, isinf and isnan booleans, and integers could grow huge (ceil(9e9)**ceil(9e9) never finishes)."""

    def wrapped(*args):
        return float(function(*args))

    return wrapped


FUNCTIONS = {name: getattr(math, name) for name in _MATH_FUNCTIONS}
FUNCTIONS.update(
    {name: _float_result(getattr(math, name)) for name in ("ceil", "floor", "trunc", "isfinite", "isinf", "isnan")},
    abs=abs,
    min=min,
    max=max,
    pow=pow,
    round=_float_result(round),
    clamp=clamp,
    lerp=lerp,
    mix=lerp,
    smoothstep=smoothstep,
    step=step,
    saw=saw,
    tri=tri,
    sqr=sqr,
    osc=osc,
)

CONSTANTS = {"pi": math.pi, "e": math.e, "tau": math.tau, "inf": math.inf}

# Names every expression sees besides the user's variables; variables may not reuse them.
BUILTIN_VARIABLES = ("t", "frame")
RESERVED_NAMES = frozenset(FUNCTIONS) | frozenset(CONSTANTS) | frozenset(BUILTIN_VARIABLES)
