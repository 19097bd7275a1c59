"""`vj prerender PRESET`: compute a preset's latent-blend transitions into the cache before a show or render."""

import sys
import time

from tqdm import tqdm

from engine.models import compile_components, load_components
from engine.transition_cache import TransitionCache
from vj.preset import load_preset
from vj.transitions import Transitions, all_pairs, prepare, scene_changes


def main(args):
    overrides = {"model": args.model, "vae": args.vae, "width": args.width, "height": args.height}
    preset = load_preset(args.preset, overrides)
    if preset.image_model != "diffusion":
        print(f"vj prerender: {preset.path}: image_model {preset.image_model} has no latent-blend transitions "
              "(they need image_model: diffusion)", file=sys.stderr)
        return 2
    pairs = all_pairs(preset) if args.all_pairs else scene_changes(preset)
    if not pairs:
        print(f"{preset.path}: one scene, no transitions to compute")
        return 0
    if preset.transition_mode != "latent_blend":
        print(f"vj prerender: note: the preset's transition_mode is '{preset.transition_mode}'; these transitions "
              "play only with transition_mode: latent_blend", file=sys.stderr)
    cache = TransitionCache()
    components = load_components(preset.model, preset.vae, args.device, args.dtype)
    if args.compile:
        compile_components(components)
    transitions = Transitions(components, preset, cache)
    started = time.perf_counter()
    with tqdm(total=len(pairs), unit="transition", desc="prerender", file=sys.stderr, dynamic_ncols=True) as bar:
        cached = prepare(transitions, pairs, bar)
    where = cache.folder or "in memory only: the cache folder cannot be written, see the warning"
    print(f"{len(pairs)} transitions: {len(pairs) - cached} computed, {cached} already in the cache "
          f"({where}) in {time.perf_counter() - started:.1f} s")
    return 0
