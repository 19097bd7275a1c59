"""Loading checkpoints: the hub cache with no network, one clear line when weights are missing. No test
contacts the hub: the endpoint is a closed loopback port, or the probe of it fails the test if called."""

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
import torch

from conftest import ROOT, closed_port, tiny_autoencoder_kl
from vj.engine import fetching
from vj.engine.errors import ModelError
from vj.engine.diffusion.models import build_tiny, load_components

PARTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
REVISION = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def no_probe(monkeypatch):
    """Fails the test if the loader asks whether the hub can be reached."""

    def probe():
        raise AssertionError("the loader went to the hub for a model it has locally")

    monkeypatch.setattr(fetching, "hub_unreachable", probe)


def cache_tiny(hub, repo="org/tiny", skip=()):
    """The tiny model saved as the hub cache holds a download of `repo` (refs/main -> snapshot); its UNet."""
    folder = hub / f"models--{repo.replace('/', '--')}"
    snapshot = folder / "snapshots" / REVISION
    parts = dict(zip(PARTS, build_tiny()))
    for name in PARTS:
        if name not in skip:
            parts[name].save_pretrained(snapshot / name)
    (snapshot / "model_index.json").write_text(
        json.dumps(
            {
                "_class_name": "StableDiffusionPipeline",
                "unet": ["diffusers", "UNet2DConditionModel"],
                "vae": ["diffusers", "AutoencoderTiny"],
                "text_encoder": ["transformers", "CLIPTextModel"],
                "tokenizer": ["transformers", "CLIPTokenizer"],
                "scheduler": ["diffusers", "EulerDiscreteScheduler"],
            }
        )
    )
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text(REVISION)
    return snapshot, parts["unet"]


def test_unknown_and_missing_models_are_clear(hub, no_probe, monkeypatch):
    with pytest.raises(ModelError, match="unknown model 'sdturbo'"):
        load_components("sdturbo", device="cpu")
    with pytest.raises(ModelError, match="unknown architecture"):
        load_components("arch:nope", device="cpu")
    with pytest.raises(ModelError, match="the tiny model has its own"):
        load_components("tiny", vae="madebyollin/taesd", device="cpu")
    with pytest.raises(ModelError, match="unknown dtype 'half'"):
        load_components("tiny", device="cpu", dtype="half")
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read at import; set it as it is read
    with pytest.raises(
        ModelError,
        match=r"^the weights of 'stabilityai/sd-turbo' are not in the Hugging Face cache "
        r"\(.*hub\) and HF_HUB_OFFLINE is set: .*`hf download stabilityai/sd-turbo`",
    ):
        load_components("stabilityai/sd-turbo", device="cpu")


@pytest.mark.parametrize("where", ["hub cache", "folder"])
def test_a_model_on_disk_loads_without_the_network(hub, no_probe, where):
    snapshot, unet = cache_tiny(hub)
    components = load_components("org/tiny" if where == "hub cache" else str(snapshot), device="cpu")
    assert type(components.vae).__name__ == "AutoencoderTiny"  # the class its config names, not AutoencoderKL
    assert type(components.scheduler).__name__ == "EulerDiscreteScheduler"
    assert components.tokenizer("a cat").input_ids == [49406, 320, 2368, 49407]
    saved, loaded = unet.state_dict(), components.unet.state_dict()
    assert saved.keys() == loaded.keys() and all(torch.equal(saved[k], loaded[k]) for k in saved)


def test_the_vae_class_comes_from_its_config(hub, no_probe, tmp_path):
    cache_tiny(hub)
    tiny_autoencoder_kl().save_pretrained(tmp_path / "kl")
    assert type(load_components("org/tiny", vae=str(tmp_path / "kl"), device="cpu").vae).__name__ == "AutoencoderKL"
    snapshot, _ = cache_tiny(hub, "org/other")
    with pytest.raises(ModelError, match=r"\(vae\): its class 'UNet2DConditionModel' is not supported"):
        load_components("org/tiny", vae=str(snapshot / "unet"), device="cpu")


@pytest.mark.parametrize("missing", PARTS)
def test_a_part_missing_from_the_cache_with_the_hub_unreachable_is_one_clear_error(hub, missing):
    cache_tiny(hub, skip=(missing,))
    with pytest.raises(
        ModelError,
        match=r"^the weights of 'org/tiny' are not in the Hugging Face cache .* and the "
        r"hub \(http://127\.0\.0\.1:\d+\) cannot be reached \(.*refused\): "
        r"where there is internet run `hf download org/tiny`",
    ):
        load_components("org/tiny", device="cpu")


def test_the_hub_probe_tells_an_answer_from_a_closed_port(monkeypatch):
    import huggingface_hub.constants

    class NotFound(BaseHTTPRequestHandler):
        def do_HEAD(self):
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), NotFound)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    try:
        monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", f"http://127.0.0.1:{server.server_port}")
        assert fetching.hub_unreachable() is None
    finally:
        server.shutdown()
        thread.join()
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    assert "refused" in fetching.hub_unreachable()


def test_render_without_cached_weights_or_network_fails_at_once_in_one_line(tmp_path):
    """Before, this took over 30 s (five hub retries, sleeping 23 s in all) and printed 28 lines; loading
    torch and diffusers takes about 5 s of it on an idle 2-core machine, hence the 25 s limit."""
    env = {key: value for key, value in os.environ.items() if key not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(
        HF_HOME=str(tmp_path / "hf"),
        HF_HUB_CACHE=str(tmp_path / "hf" / "hub"),
        HF_ENDPOINT=f"http://127.0.0.1:{closed_port()}",
    )
    out = tmp_path / "x.mp4"
    result = subprocess.run(
        [sys.executable, "-m", "vj", "render", "presets/demo.yaml", "-o", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=25,
    )
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line.startswith(
        "vj render: error: the weights of 'stabilityai/sd-turbo' are not in the Hugging Face "
        f"cache ({tmp_path / 'hf' / 'hub'}) and the hub ({env['HF_ENDPOINT']}) cannot be reached"
    )
    assert "`hf download stabilityai/sd-turbo`" in line and not out.exists()
