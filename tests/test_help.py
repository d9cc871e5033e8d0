"""Help and usage errors as git, gh and uv have them: -h means --help on every command, usage
lines show the overrides, fixed choices are listed, a usage error is one line, exit 2."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lstm_cli.commands import app

runner = CliRunner()
COMMANDS = [
    "train",
    "ui",
    "runs",
    "compare",
    "importance",
    "evaluate",
    "predict",
    "register",
    "resume",
]
WIDE = {"COLUMNS": "200"}


@pytest.mark.parametrize("command", [[], *[[c] for c in COMMANDS]])
def test_dash_h_is_help_on_every_command(command):
    short = runner.invoke(app.app, [*command, "-h"], env=WIDE)
    long = runner.invoke(app.app, [*command, "--help"], env=WIDE)
    assert short.exit_code == long.exit_code == 0
    assert short.output == long.output
    assert "Usage: lstm-digits" in short.output and "Docs: " in short.output


def test_train_help_shows_the_overrides_and_hydra_flags_one_line_each():
    out = runner.invoke(app.app, ["train", "-h"], env=WIDE).output
    assert "Usage: lstm-digits train [OPTIONS] [OVERRIDES]..." in out
    for flag in ("-m, --multirun", "--cfg job", "-cd, --config-dir", "-cn, --config-name"):
        lines = [x.strip() for x in out.splitlines() if x.strip().startswith(f"{flag} ")]
        assert len([x for x in lines if len(x.split()) > 6]) == 1  # the flag and what it does


def test_train_help_lists_every_key_of_the_config():
    from lstm_cli.config import files

    out = " ".join(runner.invoke(app.app, ["train", "-h"], env=WIDE).output.split())
    for key in list(files.keys()):
        assert (key if "." not in key else f"{key.split('.')[0]}.*") in out, key


def test_resume_usage_shows_its_overrides():
    out = runner.invoke(app.app, ["resume", "-h"], env=WIDE).output
    assert "[OVERRIDES]..." in out.splitlines()[1] + out.splitlines()[2]
    assert "epochs" in out


def test_options_with_fixed_values_list_them_and_the_environment_is_named():
    runs = runner.invoke(app.app, ["runs", "-h"], env=WIDE).output
    assert "[table|json|csv|ids]" in runs
    assert "name|status|duration" in runs
    assert "env var: MLFLOW_TRACKING_URI" in runs
    compare = runner.invoke(app.app, ["compare", "-h"], env=WIDE).output
    assert "[table|json|csv]" in compare
    assert "conf/config.yaml" not in runs + compare


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["register"], "lstm-digits register: missing argument 'RUN'"),
        (["trian"], "no such command 'trian'; did you mean 'train'?"),
        (["runs", "--limit", "x"], "invalid value for '--limit'"),
        (["compare", "-x"], "no such option: -x"),
        (["-x"], "lstm-digits: no such option: -x"),
        (["train", "--bogus"], "lstm-digits train: no such option: --bogus"),
    ],
)
def test_a_usage_error_is_one_line_on_stderr_exit_2(args, fragment):
    result = runner.invoke(app.app, args)
    assert result.exit_code == 2
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: ") and fragment in line


def test_no_command_prints_the_help_and_no_error():
    result = runner.invoke(app.app, [], env=WIDE)
    assert result.exit_code == 2  # as click and uv: no command is a usage error
    assert "Usage: lstm-digits" in result.stdout and result.stderr == ""


@pytest.mark.slow
def test_make_help_is_plain_in_a_pipe():
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run(
        ["make", "--no-print-directory", "help"], cwd=root, capture_output=True, text=True
    )
    assert out.returncode == 0 and "\033[" not in out.stdout
    assert "  help " in out.stdout and "  docs " in out.stdout
