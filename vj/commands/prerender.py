"""`vj prerender PRESET`: compute a preset's latent-blend transitions into the cache before a show or render."""

import time


from vj.config.loading import PresetError, load_preset


def pairs_to_prerender(args):
    """(preset, its overrides, the scene pairs to compute) for `vj prerender`; no pairs (and a line saying why) when
    there is nothing to compute. Exits with status 2 for a pixel model, which has no transitions."""
    overrides = {"model": args.model, "vae": args.vae, "width": args.width, "height": args.height}
    preset = load_preset(args.preset, overrides)
    if preset.transition_mode != "latent_blend":
        print(
            f"{preset.path}: nothing to prerender: transition_mode is {preset.transition_mode}, whose "
            "crossfades are computed as they play; only latent_blend transitions are computed ahead"
        )
        return preset, overrides, []
    if preset.image_model != "diffusion":
        raise PresetError(
            [
                f"{preset.path}: image_model {preset.image_model} has no latent-blend transitions "
                "(they need image_model: diffusion)"
            ]
        )
    from vj.show.blends import all_pairs, show_pairs

    pairs = all_pairs(preset) if args.all_pairs else show_pairs(preset)
    if not pairs:
        print(f"{preset.path}: one scene, no transitions to compute")
    return preset, overrides, pairs


def main(args):
    preset, _, pairs = pairs_to_prerender(args)
    if not pairs:
        return 0
    from vj.show.session import ShowSession

    session = ShowSession.open(preset, args.device, args.dtype, args.compile, guidance=False)
    started = time.perf_counter()
    cached = session.prepare(pairs, desc="prerender")
    where = session.transitions.cache.folder or "in memory only: the cache folder cannot be written, see the warning"
    print(
        f"{len(pairs)} transitions: {len(pairs) - cached} computed, {cached} already in the cache "
        f"({where}) in {time.perf_counter() - started:.1f} s"
    )
    return 0
