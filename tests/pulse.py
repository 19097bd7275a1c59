"""A private PulseAudio daemon with a null sink, so tests record real audio through PortAudio without a sound card.

Needs the Debian packages pulseaudio, pulseaudio-utils (pactl) and libasound2-plugins (the ALSA `pulse`
device that PortAudio opens). Everything the daemon writes stays in its own folder, so it never meets a
desktop's daemon or another test run's:
- HOME, XDG_CONFIG_HOME, XDG_RUNTIME_DIR, PULSE_RUNTIME_PATH (pid file, lock) and PULSE_STATE_PATH point there,
  and clients get PULSE_COOKIE and PULSE_RUNTIME_PATH there too (or they write into ~/.config/pulse);
- `--system=false` lets it run as a per-user daemon even as root (it logs a warning), `--disallow-exit` keeps
  clients from stopping it, `--exit-idle-time=-1` keeps it up between tests, `-n` loads no default modules;
- the socket is `FOLDER/native` with `auth-anonymous=1` (no cookie to share), and clients (pactl, and the
  ALSA plugin inside the test process) find it through PULSE_SERVER=unix:FOLDER/native; their client.conf
  says `autospawn = no` so a stopped daemon stays stopped.
`pulseaudio --daemonize` returns once the daemon is ready. module-null-sink renders 2 s blocks while no stream
asks for less, and a new stream waits for the current block to end; a recorder asking for 20 ms (`parec`,
kept running) makes it render in 20 ms steps, so the tests' streams start at once.
"""

import os
import select
import shutil
import signal
import subprocess
import threading
from pathlib import Path

PACKAGES = "pulseaudio pulseaudio-utils libasound2-plugins"
SINK = "vjsink"


class PulseError(RuntimeError):
    """The daemon could not be started or driven; the message says what to install or what it logged."""


class PulseDaemon:
    """Start/stop/pause a PulseAudio daemon whose default sink is the null sink `vjsink` and whose default
    source is its monitor, so what is played into it can be recorded."""

    def __init__(self, folder):
        self.folder = Path(folder)
        self.socket = self.folder / "native"
        self.client_config = self.folder / "client.conf"
        self.log = self.folder / "daemon.log"
        self.pid = None
        self.paused = False
        self._recorder = None
        # clients (this process' ALSA plugin too) would otherwise write a cookie and a link into ~/.config/pulse
        self.client_env = {
            "PULSE_SERVER": f"unix:{self.socket}",
            "PULSE_CLIENTCONFIG": str(self.client_config),
            "PULSE_COOKIE": str(self.folder / "cookie"),
            "PULSE_RUNTIME_PATH": str(self.folder / "run/pulse"),
        }
        dirs = {
            "HOME": "home",
            "XDG_CONFIG_HOME": "home/.config",
            "XDG_RUNTIME_DIR": "run",
            "PULSE_RUNTIME_PATH": "run/pulse",
            "PULSE_STATE_PATH": "state",
        }
        self.env = {**os.environ, **self.client_env, **{k: str(self.folder / v) for k, v in dirs.items()}}
        for sub in dirs.values():
            (self.folder / sub).mkdir(parents=True, exist_ok=True, mode=0o700)
        self.client_config.write_text("autospawn = no\n")

    @property
    def running(self):
        return self.pid is not None

    def start(self):
        missing = [tool for tool in ("pulseaudio", "pactl", "parec", "paplay") if shutil.which(tool) is None]
        if missing:
            raise PulseError(
                f"{' and '.join(missing)} not found: these tests record real audio through a "
                f"PulseAudio null sink; install the Debian packages {PACKAGES}"
            )
        command = [
            "pulseaudio",
            "--daemonize=yes",
            "--system=false",
            "--disallow-exit",
            "--exit-idle-time=-1",
            "-n",
            "--use-pid-file=yes",
            f"--log-target=file:{self.log}",
            f"--load=module-null-sink sink_name={SINK} rate=48000",
            f"--load=module-native-protocol-unix auth-anonymous=1 socket={self.socket}",
        ]
        done = subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=20)
        pid_file = Path(self.env["PULSE_RUNTIME_PATH"]) / "pid"
        if done.returncode != 0 or not pid_file.is_file():
            log = self.log.read_text()[-800:] if self.log.is_file() else done.stderr[-800:]
            raise PulseError(f"pulseaudio did not start (exit {done.returncode}): {log.strip()}")
        self.pid = int(pid_file.read_text())
        self.pactl("set-default-sink", SINK)
        self.pactl("set-default-source", f"{SINK}.monitor")
        self._keep_latency_low()

    def _keep_latency_low(self):
        """Start the 20 ms recorder (see the module's docstring) and wait for its first audio."""
        self._recorder = subprocess.Popen(
            ["parec", "--raw", "--latency-msec=20", f"--device={SINK}.monitor"], stdout=subprocess.PIPE, env=self.env
        )
        if not select.select([self._recorder.stdout], [], [], 20)[0]:
            raise PulseError("no audio from the null sink's monitor within 20 s (parec)")
        self._drainer = threading.Thread(target=self._drain, args=(self._recorder.stdout,), daemon=True)
        self._drainer.start()

    @staticmethod
    def _drain(pipe):
        """Discard what the recorder records until it exits (so it never blocks on a full pipe)."""
        while pipe.read1(1 << 16):
            pass

    def pactl(self, *args):
        done = subprocess.run(["pactl", *args], env=self.env, capture_output=True, text=True, timeout=20)
        if done.returncode != 0:
            raise PulseError(f"pactl {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout.strip()

    def play_tone(self, frequency):
        """Play a sine (amplitude 0.5, both channels) into the sink until `stop_tones`."""
        self.pactl("load-module", "module-sine", f"sink={SINK}", f"frequency={frequency}")

    def stop_tones(self):
        """Unload every sine playing into the sink."""
        for line in self.pactl("list", "short", "modules").splitlines():
            index, name = line.split("\t")[:2]
            if name == "module-sine":
                self.pactl("unload-module", index)

    def pause(self):
        """SIGSTOP: the daemon hangs (streams stay open but deliver nothing), as a stuck sound server does."""
        os.kill(self.pid, signal.SIGSTOP)
        self.paused = True

    def resume(self):
        if self.paused:
            os.kill(self.pid, signal.SIGCONT)
            self.paused = False

    def stop(self, timeout=10.0):
        """Terminate the daemon and wait for it to exit (it is not our child: wait on a pidfd)."""
        if self._recorder is not None:
            self._recorder.kill()
            self._recorder.wait()
            self._drainer.join(10)  # it sees the end of the pipe now
            self._recorder.stdout.close()
            self._recorder = None
        if self.pid is None:
            return
        pid, self.pid = self.pid, None
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            return
        try:
            os.kill(pid, signal.SIGCONT)
            self.paused = False
            os.kill(pid, signal.SIGTERM)
            if not select.select([fd], [], [], timeout)[0]:
                os.kill(pid, signal.SIGKILL)
                select.select([fd], [], [], timeout)
        except ProcessLookupError:
            pass  # it exited between our checks: what we wanted
        finally:
            os.close(fd)
