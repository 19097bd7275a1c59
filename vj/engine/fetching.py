"""Loading weights from the Hugging Face hub cache with no network at all, and one clear line when they are missing.

The diffusion models (vj.engine.diffusion.models), the depth models (vj.engine.depth.models) and the CLIP
perceptors (vj.engine.guidance.perceptors) load through here: a hub id is tried with local_files_only first; only
when the cache lacks it is the hub asked, after a probe that answers within HUB_PROBE_TIMEOUT seconds (the hub's
own retries would take over 30 s and print pages), and a failure is a one-line ModelError saying how to get the
weights.
"""

import contextlib
import logging
import threading
import urllib.error
import urllib.request
import warnings
from pathlib import Path

from vj.engine.errors import ModelError

HUB_PROBE_TIMEOUT = 3.0  # seconds; the hub answers well within it, so silence means it cannot be reached


@contextlib.contextmanager
def quiet_loading(progress_bars):
    """Mutes the hub's retry messages, diffusers' hints and the libraries' warnings while loading, and unless
    `progress_bars` (downloads) transformers' bars: a failure reaches the user as our one-line ModelError,
    and a load that works needs no commentary."""
    from transformers.utils import logging as transformers_logging

    loggers = [logging.getLogger(name) for name in ("huggingface_hub", "diffusers", "transformers")]
    levels = [logger.level for logger in loggers]
    bars = transformers_logging.is_progress_bar_enabled()
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    if not progress_bars:
        transformers_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
        if bars and not progress_bars:
            transformers_logging.enable_progress_bar()


def hub_unreachable():
    """Why the hub (HF_ENDPOINT) cannot be reached, or None when it answers: one HEAD request, in a thread
    given HUB_PROBE_TIMEOUT seconds, because a name lookup can hang longer than any socket timeout."""
    from huggingface_hub import constants

    outcome = [f"no answer within {HUB_PROBE_TIMEOUT:g} s"]

    def probe():
        try:
            urllib.request.urlopen(
                urllib.request.Request(constants.ENDPOINT, method="HEAD"), timeout=HUB_PROBE_TIMEOUT
            ).close()
            outcome[0] = None
        except urllib.error.HTTPError:  # a server answered, if only with an error status
            outcome[0] = None
        except OSError as exc:  # URLError (refused, no such host, ...) or a timeout
            outcome[0] = str(getattr(exc, "reason", exc)) or type(exc).__name__

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(HUB_PROBE_TIMEOUT)
    return outcome[0]


class Fetcher:
    """Loads checkpoint parts from local folders or the hub cache with no network at all, and goes to the hub
    only for a part the cache lacks, after checking once, within seconds, that the hub can be reached.

    `how_to` ends every error message: how to get the weights, a format string with `{source}` (the id)."""

    def __init__(self, how_to):
        self.how_to = how_to
        self.hub_checked = False

    def __call__(self, source, part, load):
        """`load(**kw)` with local_files_only=True first for a hub id; ModelError if it cannot be loaded."""
        local = Path(source).is_dir()
        if not local:
            try:
                with quiet_loading(progress_bars=False):
                    return load(local_files_only=True)
            except (OSError, ValueError):  # not in the cache, or not all of it
                self._check_hub(source)
        try:
            with quiet_loading(progress_bars=not local):
                return load()
        except (OSError, ValueError) as exc:
            reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise ModelError(
                f"could not load '{source}' ({part}): {reason}. Weights come from the Hugging "
                f"Face hub on first use: {self.how_to.format(source=source)}"
            ) from None

    def _check_hub(self, source):
        from huggingface_hub import constants

        if self.hub_checked:
            return
        how = self.how_to.format(source=source)
        missing = f"the weights of '{source}' are not in the Hugging Face cache ({constants.HF_HUB_CACHE})"
        if constants.HF_HUB_OFFLINE:
            raise ModelError(f"{missing} and HF_HUB_OFFLINE is set: {how}")
        reason = hub_unreachable()
        if reason is not None:
            raise ModelError(f"{missing} and the hub ({constants.ENDPOINT}) cannot be reached ({reason}): {how}")
        self.hub_checked = True
