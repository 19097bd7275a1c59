"""pytti's image prompts (issue 19): `direct_image_prompts` written `path:weight` without brackets, URLs in image
prompts, `direct_image_prompts` and `init_image` (downloaded when a show starts, cached, one line when they cannot
be; `vj check` never downloads), and a preset whose input_audio is missing (a warning; `vj render` needs --audio).
The network is a loopback http.server in the test."""

import http.server
import io
import threading
import time

import numpy as np
import pytest
from PIL import Image

from conftest import closed_port, write
from vj import cli
from vj.config import remote_files
from vj.config.loading import PresetError, load_preset, picture_file
from vj.language.scenes import bracket_image_paths
from vj.show.guidance_inputs import load_assets
from vj.show.session import load_image

RENDER = ["--model", "tiny", "--width", "64", "--height", "64", "--fps", "8", "--duration", "0.25", "--device", "cpu"]


def png(color=(200, 30, 10), size=(8, 8)):
    data = io.BytesIO()
    Image.new("RGB", size, color).save(data, format="PNG")
    return data.getvalue()


@pytest.fixture
def server(monkeypatch, tmp_path):
    """A loopback HTTP server serving /ref.png (its requests counted), the download cache in tmp_path, no proxy."""
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    body, requests = png(), []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            requests.append(self.path)
            if self.path != "/ref.png":
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.requests = requests
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@pytest.mark.parametrize(
    "text, expected",
    [
        ("images/ref.jpg:0.5 | https://example.com/a.png:1", "[images/ref.jpg]:0.5|[https://example.com/a.png]:1"),
        ("http://127.0.0.1:8000/x.png:2:0.1", "[http://127.0.0.1:8000/x.png]:2:0.1"),  # a :port does not split
        ("[ref.png]:0.5_[m.png] | b.png", "[ref.png]:0.5_[m.png] |[b.png]"),  # vj's form is kept
        ("C:/img.png:0.5", "[C:/img.png]:0.5"),
        ("https://example.com/a.png", "[https://example.com/a.png]"),
        ("a.png:1_[https://example.com/m.png]", "[a.png]:1_[https://example.com/m.png]"),
    ],
)
def test_pytti_direct_image_prompts_are_bracketed(text, expected):
    assert bracket_image_paths(text) == expected


def test_pytti_form_loads_with_weights_stops_and_urls(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "ref.png")
    path = write(
        tmp_path,
        "scenes: a forest | [https://example.com/pic.png]:0.5\n"
        "direct_image_prompts: 'ref.png:0.5 | https://example.com/a.png:1:0.2 | [ref.png]:2'\n",
    )
    preset = load_preset(path)  # nothing is downloaded: `vj check` checks a URL's syntax only
    direct = preset.direct_image_prompts
    assert [p.path for p in direct] == ["ref.png", "https://example.com/a.png", "ref.png"]
    assert [p.weight({}) for p in direct] == [0.5, 1, 2] and direct[1].stop({}) == pytest.approx(0.2)
    assert preset.scenes[0].prompts[1].path == "https://example.com/pic.png"


def test_a_missing_file_in_pytti_form_is_named(tmp_path):
    path = write(tmp_path, "scenes: a forest\ndirect_image_prompts: 'images/nowhere.jpg:0.5'\n")
    with pytest.raises(PresetError, match="image file 'images/nowhere.jpg' not found"):
        load_preset(path)


def test_a_url_without_a_host_is_refused_by_check(tmp_path):
    path = write(tmp_path, "scenes: a forest\ninit_image: 'https:///a.png'\n")
    with pytest.raises(PresetError, match="no host"):
        load_preset(path)


def test_check_does_not_download(server, tmp_path, capsys):
    path = write(
        tmp_path,
        f"scenes: '[{server.url}/ref.png]:1'\ndirect_image_prompts: '{server.url}/ref.png:0.5'\n"
        f"init_image: {server.url}/ref.png\n",
    )
    assert cli.main(["check", str(path)]) == 0
    assert server.requests == []


def test_urls_are_downloaded_at_the_start_and_cached(server, tmp_path):
    url = f"{server.url}/ref.png"
    path = write(tmp_path, f"scenes: '[{url}]:1'\ndirect_image_prompts: '{url}:0.5_[{url}]'\ninit_image: {url}\n")
    preset = load_preset(path)
    assets = load_assets(preset)
    assert server.requests == ["/ref.png"]  # one download for the prompt, the direct prompt and the mask
    assert assets.pictures[url].shape == (8, 8, 3) and tuple(assets.pictures[url][0, 0]) == (200, 30, 10)
    cached = remote_files.cached_path(url)
    assert cached.is_file() and str(cached).startswith(str(tmp_path / "cache" / "vj"))
    init = load_image(preset.init_image, 16, 16)
    assert init.shape == (16, 16, 3) and np.all(init[8, 8] == (200, 30, 10))
    load_assets(load_preset(path))  # a second show reads the cache
    assert server.requests == ["/ref.png"]


def test_a_url_that_fails_is_one_line_naming_it(server):
    with pytest.raises(PresetError) as info:
        picture_file(f"{server.url}/missing.png", None)
    (line,) = str(info.value).splitlines()
    assert f"'{server.url}/missing.png'" in line and "download it and give its path" in line


def test_no_network_is_one_line_within_the_timeout(server):
    url = f"http://127.0.0.1:{closed_port()}/ref.png"
    start = time.monotonic()
    with pytest.raises(PresetError) as info:
        picture_file(url, None)
    assert time.monotonic() - start < remote_files.TIMEOUT_S + 1
    (line,) = str(info.value).splitlines()
    assert line.startswith(f"cannot download '{url}'") and line.endswith("download it and give its path instead")


@pytest.fixture
def shared(tmp_path):
    """A pytti preset as shared: its input_audio is the author's file, missing here."""
    return write(tmp_path, "scenes: a forest:1\ninput_audio: /home/author/music/set_closer.wav\n")


def test_check_warns_of_a_missing_input_audio(shared, capsys):
    assert cli.main(["check", str(shared)]) == 0
    out = capsys.readouterr().out
    assert "warning: input_audio: audio file '/home/author/music/set_closer.wav' not found" in out
    assert "--audio" in out


def test_render_without_audio_refuses_a_missing_input_audio(shared, tmp_path, capsys):
    assert cli.main(["render", str(shared), "-o", str(tmp_path / "out.mp4"), *RENDER]) == 2
    (line,) = [x for x in capsys.readouterr().err.splitlines() if "warning" not in x]
    assert "set_closer.wav' not found" in line and "--audio" in line and "p.yaml:2" in line
