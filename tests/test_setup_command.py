"""README's setup command works as root without sudo (a fresh container) and as a user with sudo."""

import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def setup_command():
    """The first fenced command of README (the one CI runs)."""
    return re.search(r"```\n(.+?)\n```", (ROOT / "README.md").read_text(), re.S).group(1)


def stub(folder, name, body):
    path = folder / name
    path.write_text(f"#!/bin/bash\n{body}\n")
    path.chmod(0o755)


@pytest.mark.parametrize("with_sudo", [False, True])
def test_setup_command_runs_with_and_without_sudo(tmp_path, with_sudo):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "log"
    stub(bin_dir, "apt-get", f'echo "apt-get $*" >> {log}')
    venv_pip = f"/bin/mkdir -p .venv/bin && printf '#!/bin/bash\\necho \"pip $*\" >> {log}\\n' > .venv/bin/pip"
    stub(bin_dir, "python3", f'echo "python3 $*" >> {log}; {venv_pip}; /bin/chmod +x .venv/bin/pip')
    if with_sudo:
        stub(bin_dir, "sudo", f'echo "sudo $1" >> {log}; "$@"')
    work = tmp_path / "work"
    work.mkdir()
    result = subprocess.run(
        ["/bin/bash", "-c", setup_command()],
        cwd=work,
        capture_output=True,
        text=True,
        env={"PATH": str(bin_dir), "HOME": os.environ.get("HOME", "/root")},
    )
    assert result.returncode == 0, result.stderr
    lines = log.read_text().splitlines()
    assert [line.split()[0] for line in lines] == (["sudo", "apt-get"] * 2 if with_sudo else ["apt-get"] * 2) + [
        "python3",
        "pip",
    ]
    assert "-e .[test]" in lines[-1]
