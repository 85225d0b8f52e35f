"""Bad CLI input: one line on stderr, a non-zero exit, never a traceback."""

import pytest


@pytest.mark.parametrize("args", [
    ["frobnicate"],                  # unknown command
    ["doctor", "--colour"],          # unknown flag
    ["runtime", "--force=maybe"],    # bad flag value
    ["--no-such-option"],
])
def test_bad_input_is_one_line(cli, args):
    p = cli(*args)
    assert p.returncode != 0
    assert "Traceback" not in p.stderr + p.stdout
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("mlcbuild: error:")


def test_unknown_command_suggests_help(cli):
    p = cli("frobnicate")
    assert p.returncode == 2
    assert "frobnicate" in p.stderr and "--help" in p.stderr


def test_help_and_version(cli):
    p = cli("--help")
    assert p.returncode == 0
    for cmd in ("doctor", "runtime", "selfcheck"):
        assert cmd in p.stdout
    v = cli("--version")
    assert v.returncode == 0 and "mlcbuild" in v.stdout
