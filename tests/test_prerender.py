"""`vj prerender`: the transitions a live show plays next, the wrap from the last scene to the first included,
under the keys the show looks them up by; nothing to do (and no model loaded) without latent_blend."""

from conftest import write
from vj.engine.transitions.cache import TransitionCache
from vj import cli
from vj.show.engines import build_engines
from vj.config.loading import load_preset
from vj.show.blends import Transitions, all_pairs

PRESET = """\
scenes: a red fox:1 || a blue whale:1 || a green tree:2
scene_duration: 2
transition_time: 1
transition_mode: latent_blend
transition_quality: lowest
transition_steps: 2
width: 64
height: 64
"""


def test_prerender_computes_what_next_plays_in_a_live_show(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    path = write(tmp_path, PRESET)
    assert cli.main(["prerender", str(path), "--model", "tiny"]) == 0
    assert "3 transitions: 3 computed" in capsys.readouterr().out
    preset = load_preset(path, {"model": "tiny"})
    live = Transitions(build_engines(preset).components, preset, TransitionCache())  # as `vj live` builds them
    assert [pair for pair in all_pairs(preset) if live.ready(*pair)] == [(0, 1), (1, 2), (2, 0)]


def test_nothing_to_prerender_without_latent_blend(tmp_path, monkeypatch, capsys):
    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr("vj.engine.diffusion.models.load_components", refuse)
    path = write(tmp_path, PRESET.replace("latent_blend", "slerp"))
    assert cli.main(["prerender", str(path), "--model", "tiny"]) == 0
    assert capsys.readouterr().out == (
        f"{path}: nothing to prerender: transition_mode is slerp, whose crossfades are "
        "computed as they play; only latent_blend transitions are computed ahead\n"
    )
