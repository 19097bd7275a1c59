"""Latent-blend transitions (`transition_mode: latent_blend`) for renders and live shows alike.

How they meet the stream (vj streams img2img frames, each from the previous one; latent blending is made for
txt2img trajectories from noise):
- A transition A -> B is a latent-blending tree between the *keyframes* of A and B: plain txt2img of each
  scene's prompts at rest (every audio variable 0, controls at their defaults, t = 0) from the preset's seed.
  It depends only on the preset and the model, never on the live frame, so it is computed before the
  trigger (when a scene is queued, or by `vj prerender`) and cached; a chain A -> B -> C reuses B's keyframe.
- Nothing is computed at the trigger. While the transition plays, the stream goes on as always (the previous
  frame, warped by the motion expressions, img2img'd with the scenes' conditioning crossfading by slerp, the
  audio-reactive weights acting on both sides), and each frame's input is pulled toward the tree's picture at
  that moment by `transition_guide` x sin^2(pi x progress): 0, and flat, at both ends, so neither seam jumps;
  the tree's morph in the middle. After it the stream carries on from its last frame.
- A transition that is not ready when triggered plays as the plain crossfade (the HUD says so).
"""

import collections
import logging
import math
import threading
import time

import numpy as np

from vj.engine.diffusion.conditioning import ConditioningCache, prompt_conditioning
from vj.engine.diffusion.frames import to_rgb
from vj.engine.transitions.cache import cache_key, fingerprint
from vj.engine.transitions.plans import budget_plan, explicit_plan, model_crossfeed, quality_plan
from vj.engine.transitions.latent_blend import Trajectories, blend_tree, play, timing
from vj import __version__
from vj.language.scenes.edits import scene_prompts
from vj.language.value_ranges import UNREPORTED
from vj.show.variables import FrameVariables

log = logging.getLogger(__name__)

LAYOUT = 2  # what a cached transition holds (leaves, fractions, times): part of every key
KEYFRAMES_KEPT = 8  # keyframe trajectories kept for chains (a few MB each at 512x512)


def tree_plan(preset, step_seconds=None):
    """The preset's tree plan: explicit lists, a compute budget (with the measured seconds per UNet step), or a
    quality name."""
    if preset.transition_branches is not None:
        return explicit_plan(preset.transition_branches, preset.transition_injections, preset.transition_steps)
    if preset.transition_budget is not None and step_seconds is not None:
        return budget_plan(
            preset.transition_budget, step_seconds, step_seconds, preset.transition_depth, preset.transition_steps
        )
    return quality_plan(preset.transition_quality, preset.transition_depth, preset.transition_steps)


def tree_crossfeed(preset, model):
    """The preset's parental crossfeed on the model named `model`: its keys, else latent blending's defaults for
    that model (1, 1, 1 for turbo models, else 0.3, 0.6, 0.9)."""
    return model_crossfeed(
        model, preset.transition_crossfeed_power, preset.transition_crossfeed_range, preset.transition_crossfeed_decay
    )


def guide_weight(preset, progress):
    """How far a frame's input is pulled toward the tree's picture: `transition_guide` x sin^2(pi x progress),
    0 with a flat start and end, so neither seam of the transition jumps."""
    return preset.transition_guide * math.sin(math.pi * min(max(progress, 0.0), 1.0)) ** 2


class _AsFloat:
    """Leaves (n, H, W, 3) uint8 read one at a time as float32, for `play`'s blend of two neighbours."""

    def __init__(self, leaves):
        self.leaves = leaves

    def __len__(self):
        return len(self.leaves)

    def __getitem__(self, i):
        return self.leaves[i].astype(np.float32)


class _Setup:
    """What the transitions of one preset version depend on; replaced whole at a reload, so a computation in
    flight finishes with the version it started with (and stores it under that version's key)."""

    def __init__(self, components, preset, seed):
        self.preset = preset
        self.seed = preset.seed if seed is None else seed
        self.trajectories = Trajectories(components, preset.width, preset.height)
        self.rest_env = rest_env(preset)
        self.crossfeed = tree_crossfeed(preset, components.name)
        self.keys = {}  # (a, b) -> cache key
        self.settings = dict(
            model=components.name,
            vae=preset.vae,
            dtype=str(components.dtype),
            device=components.device.type,
            width=preset.width,
            height=preset.height,
            seed=self.seed,
            steps=preset.transition_steps,
            quality=preset.transition_quality,
            depth=preset.transition_depth,
            branches=preset.transition_branches,
            injections=preset.transition_injections,
            budget=preset.transition_budget,
            crossfeed=[self.crossfeed.power, self.crossfeed.range, self.crossfeed.decay],
        )

    def rest_prompts(self, scene):
        """Scene `scene`'s (text, weight) prompts at rest: the keyframe's."""
        return rest_prompts(self.preset, scene, self.rest_env)


def rest_env(preset):
    """The variables of a preset at rest: audio and musical variables 0, controls at their defaults, t = 0."""
    rest = {c.name: float(c.default) for c in preset.controls}
    return FrameVariables(preset.input_variables + preset.control_names).frame(0.0, 0, rest)


def rest_prompts(preset, scene, env):
    """Scene `scene`'s (text, weight) prompts in `env`, each number held in its range (as the Director does)."""
    return scene_prompts(preset.scenes[scene], env, UNREPORTED)


class Transitions:
    """The latent-blend transitions of a preset on one model: cache keys, computation (`compute`, blocking) and
    playback (`guide`, never blocking). Thread-safe: a worker computes while the engine thread plays."""

    def __init__(self, components, preset, cache, seed=None):
        self.c = components
        self.cache = cache
        self._conds = ConditioningCache(components.text_encoder, components.tokenizer, components.device)
        self._keyframes = collections.OrderedDict()  # keyframe key -> Path
        self._compute_lock = threading.Lock()  # one tree at a time
        self._step_seconds = None
        self.generation = 0  # counts preset versions (a worker's done list follows it)
        self.use_preset(preset, seed)

    def use_preset(self, preset, seed=None):
        """A new or reloaded preset: keys follow its scenes and settings from now on."""
        self._setup = _Setup(self.c, preset, seed)
        self.generation += 1

    @property
    def preset(self):
        return self._setup.preset

    def _cond(self, setup, scene):
        return prompt_conditioning(self._conds, setup.rest_prompts(scene))

    def key(self, a, b, setup=None):
        """The cache key of A -> B: both rest conditionings and every setting that changes the frames."""
        setup = setup or self._setup
        key = setup.keys.get((a, b))
        if key is None:
            key = setup.keys[(a, b)] = cache_key(
                __version__,
                kind="latent_blend",
                layout=LAYOUT,
                a=self._cond(setup, a),
                b=self._cond(setup, b),
                **setup.settings,
            )
        return key

    def ready(self, a, b):
        """Whether A -> B is in the cache (memory or disk)."""
        return self.cache.get(self.key(a, b)) is not None

    def compute(self, a, b):
        """The leaves of A -> B, (n, H, W, 3) uint8 in playing order: from the cache, or computed and cached."""
        setup = self._setup
        key = self.key(a, b, setup)
        hit = self.cache.get(key)
        if hit is not None:
            return hit["leaves"]
        with self._compute_lock:
            hit = self.cache.get(key)
            if hit is not None:
                return hit["leaves"]
            conds = self._cond(setup, a), self._cond(setup, b)
            ends = [self._keyframe(setup, cond, fraction) for cond, fraction in zip(conds, (0.0, 1.0))]
            paths = blend_tree(
                setup.trajectories,
                *conds,
                setup.seed,
                tree_plan(setup.preset, self._step_seconds),
                ends=ends,
                crossfeed=setup.crossfeed,
            )
            leaves = np.stack([to_rgb(p.image) for p in paths])
            self.cache.put(
                key,
                {
                    "leaves": leaves,
                    "fractions": np.array([p.fraction for p in paths]),
                    "times": np.array(timing([p.image for p in paths])),
                },
            )
            return leaves

    def _keyframe(self, setup, cond, fraction):
        """A scene's keyframe trajectory (kept for chains); the first one measures the cost of a UNet step."""
        s = setup.settings
        key = cache_key(
            __version__,
            kind="keyframe",
            cond=fingerprint(cond),
            **{k: s[k] for k in ("model", "vae", "dtype", "device", "width", "height", "seed", "steps")},
        )
        path = self._keyframes.get(key)
        if path is None:
            started = time.perf_counter()
            path = setup.trajectories.endpoint(cond, setup.seed, setup.preset.transition_steps, fraction)
            self._step_seconds = (time.perf_counter() - started) / (setup.preset.transition_steps + 1)
            self._keyframes[key] = path
            while len(self._keyframes) > KEYFRAMES_KEPT:
                self._keyframes.popitem(last=False)
        self._keyframes.move_to_end(key)
        return path

    def guide(self, a, b, progress):
        """(the tree's picture at `progress` as float32 HxWx3 0..255, its weight), or None when A -> B is not
        in the cache: then the transition plays as the plain crossfade."""
        setup = self._setup
        hit = self.cache.get(self.key(a, b, setup))
        if hit is None:
            return None
        return play(_AsFloat(hit["leaves"]), progress, hit["times"].tolist()), guide_weight(setup.preset, progress)


class TransitionWorker:
    """Computes the transitions a show may play next on its own thread, the first wanted first. A failure is
    logged and counted (the show then crossfades), never raised."""

    def __init__(self, transitions):
        self.transitions = transitions
        self.computing = None  # the (a, b) being computed, for the HUD
        self.errors = 0
        self._wanted = []
        self._done = set()  # (preset generation, pair) computed or failed
        self._changed = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="vj-transitions", daemon=True)
        self._thread.start()

    def want(self, pairs):
        """The (from, to) scene pairs to have ready, most urgent first (replaces the previous wish)."""
        pairs = list(pairs)
        with self._changed:
            if pairs != self._wanted:
                self._wanted = pairs
                self._changed.notify()

    def _next(self):
        generation = self.transitions.generation
        return next((pair for pair in self._wanted if (generation, pair) not in self._done), None)

    def _run(self):
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._stop or self._next() is not None)
                if self._stop:
                    return
                pair = self._next()
                done = (self.transitions.generation, pair)
            self.computing = pair
            try:
                self.transitions.compute(*pair)
            except Exception:  # the show goes on with the crossfade; the log has the cause
                self.errors += 1
                log.exception("latent-blend transition %d -> %d failed", pair[0] + 1, pair[1] + 1)
            finally:
                self.computing = None
                with self._changed:
                    self._done.add(done)
                    self._changed.notify_all()

    def wait_idle(self, timeout):
        """Wait until every wanted transition is done (or failed); False after `timeout` seconds."""
        with self._changed:
            return self._changed.wait_for(lambda: self._next() is None, timeout)

    def close(self, timeout=2.0):
        """Stop after the transition being computed (abandoned after `timeout`: the thread is a daemon)."""
        with self._changed:
            self._stop = True
            self._changed.notify()
        self._thread.join(timeout)


def scene_changes(preset, start=0.0, duration=None):
    """The (from, to) scene pairs whose transitions a render of [start, start + duration] plays."""
    starts = np.concatenate(([0.0], np.cumsum(preset.scene_durations())))
    end = math.inf if duration is None else start + duration
    return [
        (i - 1, i)
        for i in range(1, len(preset.scenes))
        if starts[i] < end and starts[i] + preset.transition_time > start
    ]


def show_pairs(preset):
    """Each scene to the next, and the last to the first: what "next" plays in a live show (a render plays the
    first of them, `scene_changes`)."""
    n = len(preset.scenes)
    return [(a, (a + 1) % n) for a in range(n)] if n > 1 else []


def all_pairs(preset):
    """Every ordered pair of different scenes (a show may jump from any scene to any other)."""
    n = len(preset.scenes)
    return [(a, b) for a in range(n) for b in range(n) if a != b]


def prepare(transitions, pairs, progress=None):
    """Compute (or find in the cache) each pair's transition; returns how many were already cached."""
    cached = 0
    for a, b in pairs:
        if transitions.ready(a, b):
            cached += 1
        else:
            transitions.compute(a, b)
        if progress is not None:
            progress.update(1)
    return cached
