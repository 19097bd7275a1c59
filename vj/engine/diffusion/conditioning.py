"""Prompt conditioning: a cache of text embeddings and the per-frame weighted combination."""

import threading

import torch

from vj.engine.diffusion.prompt_edits import has_groups


class ConditioningCache:
    """Runs the text encoder once per distinct prompt text; `hits`/`misses` count lookups."""

    def __init__(self, text_encoder, tokenizer, device):
        self.text_encoder = text_encoder
        self.tokenizer = tokenizer
        self.device = device
        self._cache = {}
        self.hits = self.misses = 0
        self._editor = None  # vj.engine.diffusion.prompt_edits.PromptEditor, made for the first text with brace groups
        self._lock = threading.RLock()  # a live show's engine thread and transition worker may share a cache

    def embed(self, text):
        """(1, 77, D) last hidden state, as diffusers' Stable Diffusion pipelines compute it.

        A text with brace groups (`a {1.0*cat + 0.4*tabby}`, numeric coefficients) is edited token by token from
        the embeddings of plain sentences, which are cached here (vj.engine.diffusion.prompt_edits); edited results
        are kept only in a small bounded cache there.
        """
        with self._lock:  # re-entrant: an edited text embeds its plain sentences through here
            return self._edited(text) if has_groups(text) else self._plain(text)

    def _plain(self, text):
        cached = self._cache.get(text)
        if cached is not None:
            self.hits += 1
            return cached
        self.misses += 1
        ids = self.tokenizer(
            text, padding="max_length", max_length=self.tokenizer.model_max_length, truncation=True, return_tensors="pt"
        ).input_ids.to(self.device)
        mask = None
        if getattr(self.text_encoder.config, "use_attention_mask", False):
            mask = (ids != self.tokenizer.pad_token_id).long()
        with torch.inference_mode():
            out = self.text_encoder(ids, attention_mask=mask)[0]
        self._cache[text] = out
        return out

    def _edited(self, text):
        if self._editor is None:
            from vj.engine.diffusion.prompt_edits import PromptEditor

            self._editor = PromptEditor(self)
        return self._editor.embed(text)


def prompt_conditioning(cache, prompts):
    """The conditioning of (text, weight) prompts: `combine` of their embeddings (the empty prompt if none)."""
    return combine([cache.embed(text) for text, _ in prompts], [w for _, w in prompts], cache.embed(""))


def combine(embeddings, weights, empty):
    """Weighted mean of the positive prompts, pushed away from the negative ones.

    c = P + sum_j |w_j| / (W + N) * (P - E_j), where P is the weighted mean of the prompts with
    w > 0 (the empty prompt if none), W their total weight, N the total |w| of negative prompts.
    Weight 0 disables a prompt; the push never exceeds one whole (P - E_j).
    """
    positive = [(e, w) for e, w in zip(embeddings, weights) if w > 0]
    negative = [(e, -w) for e, w in zip(embeddings, weights) if w < 0]
    if positive:
        total = sum(w for _, w in positive)
        base = positive[0][0] if len(positive) == 1 else sum(e * (w / total) for e, w in positive)
    else:
        total, base = 0.0, empty
    if not negative:
        return base
    norm = total + sum(w for _, w in negative)
    return base + sum((base - e) * (w / norm) for e, w in negative)


def slerp(a, b, t, eps=1e-6):
    """Spherical interpolation per token vector (last dimension); linear where vectors are parallel."""
    a32, b32 = a.float(), b.float()
    an = a32 / a32.norm(dim=-1, keepdim=True).clamp_min(eps)
    bn = b32 / b32.norm(dim=-1, keepdim=True).clamp_min(eps)
    dot = (an * bn).sum(-1, keepdim=True).clamp(-1.0, 1.0)
    omega = torch.acos(dot)
    so = torch.sin(omega)
    parallel = so.abs() < eps
    safe = torch.where(parallel, torch.ones_like(so), so)
    wa = torch.where(parallel, torch.full_like(so, 1.0 - t), torch.sin((1.0 - t) * omega) / safe)
    wb = torch.where(parallel, torch.full_like(so, t), torch.sin(t * omega) / safe)
    return (wa * a32 + wb * b32).to(a.dtype)


def crossfade(a, b, t, mode):
    """From conditioning a (t=0) to b (t=1), 'linear' or 'slerp'."""
    if t <= 0.0:
        return a
    if t >= 1.0:
        return b
    return torch.lerp(a, b, t) if mode == "linear" else slerp(a, b, t)
