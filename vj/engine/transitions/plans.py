"""The shape of a latent-blending tree (which branches, injected at which steps), by quality name, explicit
lists or a compute budget. Plain Python: presets are checked against it without loading torch."""

from dataclasses import dataclass, replace

from vj.engine.errors import EngineError
from vj.engine.vocabulary import QUALITIES


@dataclass(frozen=True)
class TreePlan:
    """The tree's shape: `steps` per trajectory; level k adds `branches[k]` branches injected at step
    `injections[k]` (steps increasing, each in 0..steps-1)."""

    steps: int
    branches: tuple
    injections: tuple

    def __post_init__(self):
        if self.steps < 1:
            raise EngineError(f"a transition needs at least 1 step, got {self.steps}")
        if len(self.branches) != len(self.injections):
            raise EngineError(
                f"{len(self.branches)} branch counts for {len(self.injections)} injection steps: "
                "give one count per injection step"
            )
        if any(b < 0 for b in self.branches):
            raise EngineError(f"branch counts must be >= 0, got {list(self.branches)}")
        if list(self.injections) != sorted(self.injections) or any(not 0 <= i < self.steps for i in self.injections):
            raise EngineError(f"injection steps must increase within 0..{self.steps - 1}, got {list(self.injections)}")

    @property
    def leaves(self):
        return 2 + sum(self.branches)

    def unet_calls(self):
        """UNet evaluations the tree costs (endpoints included)."""
        return 2 * self.steps + sum(b * (self.steps - i) for b, i in zip(self.branches, self.injections))


@dataclass(frozen=True)
class Crossfeed:
    """Latent blending's parental crossfeed: before each step of a branch, its latent is slerped toward its
    parents' latent at that step by a weight falling linearly from `power` at the injection step to
    power x `decay` at the last step before round(`range` x steps), 0 from there on (all three in 0..1)."""

    power: float
    range: float
    decay: float

    def __post_init__(self):
        if not all(0.0 <= v <= 1.0 for v in (self.power, self.range, self.decay)):
            raise EngineError(f"crossfeed power, range and decay must be within 0..1, got {self}")

    def weights(self, steps, injection):
        """The weight of each step 0..steps-1 of a branch injected at step `injection`."""
        count = max(0, int(round(self.range * steps)) - injection)
        fall = (self.power * self.decay - self.power) / max(1, count - 1)
        return [0.0] * injection + [self.power + k * fall for k in range(count)] + [0.0] * (steps - injection - count)


CROSSFEED = Crossfeed(0.3, 0.6, 0.9)  # latent blending's defaults ...
TURBO_CROSSFEED = Crossfeed(1.0, 1.0, 1.0)  # ... and those for turbo models


def model_crossfeed(model, power=None, range=None, decay=None):
    """The crossfeed for the model named `model`: latent blending's defaults (TURBO_CROSSFEED where the name says
    turbo, as the original decides, else CROSSFEED), each replaced by a value given."""
    base = TURBO_CROSSFEED if "turbo" in model.lower() else CROSSFEED
    given = {"power": power, "range": range, "decay": decay}
    return replace(base, **{k: float(v) for k, v in given.items() if v is not None})


def injection_step(strength, steps):
    """The step a branch of injection strength `strength` (0..1) starts at: round(strength x steps), as latent
    blending computes it, at most the last step."""
    return min(steps - 1, int(round(strength * steps)))


def _injection_steps(depth_strength, steps, levels):
    """Up to `levels` distinct injection steps from depth_strength * steps up to the last step."""
    if not 0.0 <= depth_strength <= 1.0:
        raise EngineError(f"depth_strength must be within 0..1, got {depth_strength:g}")
    first = injection_step(depth_strength, steps)
    count = min(levels, steps - first)
    return sorted({first + round(k * (steps - 1 - first) / max(1, count - 1)) for k in range(count)})


def quality_plan(quality="medium", depth_strength=0.5, steps=4, levels=3):
    """A plan by name (`lowest` ... `ultra`: 5 ... 33 leaves) and depth_strength (near 0: creative, the
    branches start early from noise; near 1: close to an alpha blend). Later levels get twice the branches of
    the one before (they cost fewer steps)."""
    if quality not in QUALITIES:
        raise EngineError(f"transition quality '{quality}' is not one of {', '.join(QUALITIES)}")
    injections = _injection_steps(depth_strength, steps, levels)
    return TreePlan(steps, _spread(QUALITIES[quality] - 2, len(injections)), tuple(injections))


def _spread(total, levels):
    """`total` branches over `levels` levels, each level about twice the one before."""
    shares = [2**k for k in range(levels)]
    counts = [total * s // sum(shares) for s in shares]
    for k in range(total - sum(counts)):
        counts[-1 - k % levels] += 1
    return tuple(counts)


def explicit_plan(branches, injection_strengths, steps=4):
    """A plan from lists: branches per level and injection strengths (fractions of the steps, 0..1)."""
    if len(branches) != len(injection_strengths):
        raise EngineError(f"{len(branches)} branch counts for {len(injection_strengths)} injection strengths")
    injections = tuple(injection_step(s, steps) for s in injection_strengths)
    return TreePlan(steps, tuple(int(b) for b in branches), injections)


def budget_plan(seconds, step_seconds, decode_seconds, depth_strength=0.5, steps=4, levels=3):
    """The largest quality-shaped plan whose branches fit `seconds` of compute, given the measured cost of one
    UNet step and one decode (the endpoints are paid before: they are not in the budget)."""
    injections = _injection_steps(depth_strength, steps, levels)
    best = TreePlan(steps, (0,) * len(injections), tuple(injections))
    for total in range(1, 200):
        plan = TreePlan(steps, _spread(total, len(injections)), tuple(injections))
        cost = (plan.unet_calls() - 2 * steps) * step_seconds + total * decode_seconds
        if cost > seconds:
            break
        best = plan
    return best
