"""A CLIP BPE tokenizer that works offline, built from the vocabulary open_clip ships.

The vocabulary (engine/assets/bpe_simple_vocab_16e6.txt.gz, MIT licence, see
LICENSE-openclip-bpe) is the one OpenAI CLIP and Stable Diffusion use; from it we build the
same token ids as the hub's CLIP tokenizers, as a transformers CLIPTokenizer.
"""

import functools
import gzip
from pathlib import Path

VOCAB = Path(__file__).parent / "assets" / "bpe_simple_vocab_16e6.txt.gz"
MAX_LENGTH = 77


def _bytes_to_unicode():
    """The reversible byte -> printable character map of GPT-2/CLIP BPE."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


@functools.lru_cache(maxsize=None)
def _vocab_and_merges():
    lines = gzip.open(VOCAB).read().decode("utf-8").split("\n")[1 : 49152 - 256 - 2 + 1]
    merges = [tuple(line.split()) for line in lines if line]
    symbols = _bytes_to_unicode()
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {tok: i for i, tok in enumerate(tokens)}, merges


def clip_tokenizer(pad_token="<|endoftext|>"):
    """A transformers CLIPTokenizer with CLIP's vocabulary, padded to 77 tokens."""
    from transformers import CLIPTokenizer

    vocab, merges = _vocab_and_merges()
    return CLIPTokenizer(vocab=dict(vocab), merges=list(merges), pad_token=pad_token, model_max_length=MAX_LENGTH)
