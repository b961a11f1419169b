"""A config file that does not parse, or has no ``get_config``, is one line and exit status 2,
before anything is created."""

import re

import pytest

from sld_jax import cli


@pytest.mark.parametrize(
    "text, message",
    [
        ("def get_config(:\n", r"does not parse \(invalid syntax, line 1\); fix that line"),
        ("x = 1\n", r"has no get_config\(arg=None\)"),
    ],
    ids=["syntax_error", "no_get_config"],
)
def test_a_broken_config_file_is_one_line_and_exit_2(text, message, tmp_path, capsys):
    path = tmp_path / "broken.py"
    path.write_text(text)
    workdir = tmp_path / "run"
    assert cli.train_main(["--config", str(path), "--workdir", str(workdir)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert re.search(message, err), err
    assert not workdir.exists()
