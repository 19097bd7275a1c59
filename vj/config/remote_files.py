"""Pictures a preset names by URL (image prompts, `direct_image_prompts`, `init_image`, image masks), as pytti
allows: `vj check` checks only their syntax and never downloads; a render or a live show downloads each once when
it starts (a few seconds' timeout) into a cache under $XDG_CACHE_HOME (else ~/.cache)/vj/remote_files, so a second
show reads the cached copy without the network. Without a network, or when the URL fails, the error is one line
naming the URL and saying to download the picture and give its path.
"""

import hashlib
import os
import pathlib
import urllib.error
import urllib.parse
import urllib.request

from vj.errors import VjError

URL_SCHEMES = ("http", "https")
TIMEOUT_S = 5.0


class RemoteFileError(VjError):
    """A URL that cannot be downloaded; the message names it and says what to do."""


def is_url(text):
    """Whether a preset's path text is a URL (`http://` or `https://`)."""
    head, sep, _ = str(text).strip().partition("://")
    return bool(sep) and head.lower() in URL_SCHEMES


def url_problem(text):
    """Why `text` (a URL) cannot be fetched as written (to follow its quoted text), or None: a host is needed."""
    parts = urllib.parse.urlsplit(text.strip())
    return None if parts.netloc else "is not a URL vj can download (no host)"


def cache_dir():
    """Where downloaded pictures are kept: under $XDG_CACHE_HOME, else ~/.cache."""
    base = os.environ.get("XDG_CACHE_HOME")
    root = pathlib.Path(base) if base else pathlib.Path.home() / ".cache"
    return root / "vj" / "remote_files"


def cached_path(url, folder=None):
    """The file a URL is cached in (it may not exist yet); the URL's file suffix is kept for the readers."""
    url = url.strip()
    suffix = pathlib.PurePosixPath(urllib.parse.urlsplit(url).path).suffix[:10]
    name = hashlib.sha256(url.encode("utf-8")).hexdigest()[:32] + suffix
    return pathlib.Path(folder or cache_dir()) / name


def fetch(url, timeout=TIMEOUT_S, folder=None):
    """The local file of `url`: the cached copy, else downloaded now (within `timeout` seconds per network step);
    RemoteFileError (one line) when it cannot be."""
    url = url.strip()
    path = cached_path(url, folder)
    if path.is_file():
        return path
    try:
        if url_problem(url):
            raise ValueError("no host")
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (http/https only: is_url)
            data = response.read()
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + f".{os.getpid()}.part")
        partial.write_bytes(data)
        partial.replace(path)
    except (OSError, ValueError, urllib.error.URLError) as exc:
        reason = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
        raise RemoteFileError(
            f"cannot download '{url}' ({str(reason).splitlines()[0]}): download it and give its path instead"
        ) from None
    return path
