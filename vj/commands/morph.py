"""`vj morph PRESET --from WORD --to WORD`: a word of the first scene morphed into another by token-level
arithmetic, one txt2img frame per step with the preset's seed, as a strip (PNG) or a clip (MP4).

Step k of N edits the word's tokens to `(1 - k/(N-1)) * FROM + k/(N-1) * TO` in its own sentence (the other prompts
of the scene keep their weights at rest), so the strip shows how the model's picture moves between the two words:
calm stretches and sudden jumps, as the embedding space has them.
"""

import re
from pathlib import Path

import numpy as np

from vj.engine.diffusion.prompt_edits import format_text, parse_text
from vj.config.loading import load_preset
from vj.errors import VjError


class MorphError(VjError):
    """A morph that cannot be made; the message says what to change."""


def _whole_word(word, text):
    return re.search(rf"(?<![\w]){re.escape(word)}(?![\w])", text)


def morph_texts(text, word, target, steps):
    """`text` (a canonical numeric text, see vj.engine.diffusion.prompt_edits) at each of `steps` mixes from `word` to
    `target`, or None where `word` is not in it. Outside brace groups the first whole-word `word` becomes the group
    `{(1-k)*word + k*target}`; inside a group, the term holding it splits in two, `(1-k)*c` of the term as written
    and `k*c` of the term with `target` for `word`, and the other terms stay. Step 0 is the text's own edit."""
    edited = parse_text(text)
    pieces, groups = list(edited.pieces), [list(g) for g in edited.groups]
    mixes = np.linspace(0.0, 1.0, steps)
    for p, piece in enumerate(pieces):
        match = _whole_word(word, piece)
        if match:
            pieces[p : p + 1] = [piece[: match.start()], piece[match.end() :]]
            return [format_text(pieces, groups[:p] + [[(1.0 - k, word), (k, target)]] + groups[p:]) for k in mixes]
    for g, terms in enumerate(groups):
        for j, (c, words) in enumerate(terms):
            match = _whole_word(word, words)
            if match:
                other = words[: match.start()] + target + words[match.end() :]
                return [
                    format_text(
                        pieces,
                        groups[:g]
                        + [terms[:j] + [(c * (1.0 - k), words), (c * k, other)] + terms[j + 1 :]]
                        + groups[g + 1 :],
                    )
                    for k in mixes
                ]
    return None


def main(args):
    for option, word in (("--from", args.from_word), ("--to", args.to_word)):
        if not word.strip() or not all(c.isalpha() or c in " '" for c in word):
            raise MorphError(f"{option} '{word}': write words of letters (and spaces), like 'tabby cat'")
    out = Path(args.output)  # checked by the command line: .png or .mp4, and it can be written
    preset = load_preset(args.preset, {"model": args.model, "width": args.width, "height": args.height})
    if preset.image_model != "diffusion":
        raise MorphError(
            f"vj morph edits the diffusion model's text embedding; the preset's image_model is {preset.image_model}"
        )
    from vj.show.blends import rest_env, rest_prompts

    prompts = list(rest_prompts(preset, 0, rest_env(preset)))  # as a scene's keyframe has them
    found = next(
        (
            (i, texts)
            for i, (text, _) in enumerate(prompts)
            if (texts := morph_texts(text, args.from_word, args.to_word, args.steps))
        ),
        None,
    )
    if found is None:
        listed = "; ".join(p.text for p in preset.scenes[0].prompts if not p.is_image)  # as the preset writes them
        raise MorphError(f"'{args.from_word}' is not a word of scene 1's prompts ({listed})")
    index, texts = found
    from vj.engine.diffusion.frames import FrameRequest
    from vj.show.session import ShowSession

    engine = ShowSession.open(preset, args.device, args.dtype, args.compile, guidance=False).engine()
    frames = []
    for text in texts:
        engine.reset()  # every step from the same noise: txt2img with the preset's seed
        request_prompts = tuple((text, w) if i == index else (t, w) for i, (t, w) in enumerate(prompts))
        frames.append(engine.render(FrameRequest(index=0, prompts=request_prompts, seed=preset.seed)))
    if out.suffix.lower() == ".png":
        from PIL import Image

        Image.fromarray(np.concatenate(frames, axis=1)).save(out)
    else:
        from vj.video.outputs.mp4 import Mp4Writer

        writer = Mp4Writer(out, preset.frames_per_second, preset.width, preset.height)
        for frame in frames:
            writer.write(frame)
        writer.close()
    print(f"wrote {len(frames)} steps of '{args.from_word}' -> '{args.to_word}' to '{out}'")
    return 0
