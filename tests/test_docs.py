"""The README and the docs site: the site builds with --strict (a broken link or anchor fails),
the README stays short, nothing points outside the repository, and every shell command they
show is either run (the one-line errors they quote) or parsed by the CLI without running (a
dry parse): a renamed command, option, config key or make target fails here."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from lstm_cli.commands import app
from lstm_cli.config import files
from lstm_cli.config.compose import preflight

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README_LIMIT = 6 * 1024
# Commands of other tools the pages show (installs, shell plumbing): shown as those tools
# document them, not parsed here. (`mlflow ...` is parsed by MLflow's own CLI.)
OTHER_TOOLS = {
    "pip",
    "pipx",
    "curl",
    "export",
    "source",
    "jq",
    "git",
    "cd",
    "cat",
    "for",
    "done",
    "tee",
    ".venv/bin/pip",
}
VARIABLES = {"MLFLOW_TRACKING_URI": "http://127.0.0.1:5055"}  # any other $VAR: a run id


def _blocks(text: str) -> list[tuple[str, list[str]]]:
    """The fenced code blocks of a Markdown page: (language, lines)."""
    found, lang, lines = [], None, []
    for line in text.splitlines():
        fence = re.match(r"^\s*```(\w*)", line)
        if fence and lang is None:
            lang, lines = fence[1] or "text", []
        elif fence:
            found.append((lang, lines))
            lang = None
        elif lang is not None:
            lines.append(line)
    return found


def shown_commands() -> list[tuple[str, str, str | None]]:
    """(page, command line, the error line shown after it or None) for every shell command."""
    found = []
    for page in PAGES:
        for lang, lines in _blocks(page.read_text()):
            if lang in ("bash", "sh", "shell", "console"):
                joined = "\n".join(lines).replace("\\\n", " ")
                found += [(page.name, line, None) for line in joined.splitlines() if line.strip()]
            elif lang == "text":
                for i, line in enumerate(lines):
                    if line.startswith("$ "):
                        after = lines[i + 1] if i + 1 < len(lines) else ""
                        error = after if after.startswith("error: ") else None
                        found.append((page.name, line[2:], error))
    return found


def _words(line: str) -> list[list[str]]:
    """A shell line as its simple commands (split at |, &&, ;), each without its leading
    variable assignments and redirections, $(...) as a command of its own."""
    inner = re.findall(r"\$\(([^)]*)\)", line)
    line = re.sub(r"\$\([^)]*\)", "3f2a", line)
    line = re.sub(r"\$(\w+)", lambda m: VARIABLES.get(m[1], "3f2a"), line)
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split, lexer.commenters = True, "#"
    commands, current = [], []
    for token in [*lexer, ";"]:
        if token in (";", "&&", "|", "||", "&"):
            words, skip = [], False
            for word in current:  # redirections: `2> file`, `>file`
                if not skip and re.match(r"^\d?>", word):
                    skip = bool(re.match(r"^\d?>$", word))
                else:
                    if not skip:
                        words.append(word)
                    skip = False
            while words and re.match(r"^[A-Z_]+=", words[0]):
                words.pop(0)
            if words and words[0] in ("do", "then"):
                words.pop(0)
            if words:
                commands.append(words)
            current = []
        else:
            current.append(token)
    return commands + [c for text in inner for c in _words(text)]


def dry_parse(argv: list[str]) -> None:
    """Parse `lstm-digits ARGV` as the CLI would, without running the command: the command and
    its options by click, train's overrides by the same pre-flight as a run, resume's keys."""
    group = typer.main.get_command(app.app)
    root = group.make_context("lstm-digits", [], resilient_parsing=True)
    while argv and argv[0] in ("--debug",):
        argv = argv[1:]
    if not argv or argv[0] in ("-h", "--help", "--version", "--install-completion"):
        return
    assert argv[0] in group.commands, f"no command {argv[0]!r}"
    if {"-h", "--help"} & set(argv):
        return
    command = group.commands[argv[0]]
    ctx = command.make_context(argv[0], list(argv[1:]), parent=root)
    if argv[0] == "train":  # keys, groups and types as a run checks them; --cfg: not ranges
        preflight([*ctx.args, "--cfg", "job"])
    elif argv[0] == "resume":  # a run's keys, or a sweep's launcher's
        keys = set(files.keys())
        for override in ctx.args:
            key = override.partition("=")[0]
            assert key in keys or key.startswith("hydra.launcher."), override


def dry_parse_mlflow(argv: list[str]) -> None:
    """`mlflow ARGV` parsed by MLflow's own click CLI, without running it."""
    from mlflow.cli import cli as command

    while argv and argv[0] in getattr(command, "commands", {}):
        command, argv = command.commands[argv[0]], argv[1:]
    assert not hasattr(command, "commands"), f"no mlflow command in {argv}"
    command.make_context("mlflow", list(argv))


def _make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([a-zA-Z_-]+):", text, re.MULTILINE))


def _ids(items):
    return [f"{page}: {line}" for page, line, _ in items]


COMMANDS = shown_commands()
ERRORS = [c for c in COMMANDS if c[2]]
PARSED = [c for c in COMMANDS if not c[2]]


def test_the_pages_show_commands():
    assert len(PARSED) > 60 and len(ERRORS) >= 5


@pytest.mark.parametrize(("page", "line", "error"), PARSED, ids=_ids(PARSED))
def test_every_command_shown_parses(page, line, error, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing a parse might write lands in the checkout
    for words in _words(line):
        head = words[0]
        if head == "lstm-digits":
            dry_parse(words[1:])
        elif words[:3] == ["python", "-m", "lstm_cli"]:
            dry_parse(words[3:])
        elif head == "mlflow":
            dry_parse_mlflow(words[1:])
        elif head == "make":
            targets = [w for w in words[1:] if "=" not in w]
            assert set(targets) <= _make_targets(), targets
        else:
            assert head in OTHER_TOOLS, f"{head}: neither lstm-digits, make nor a known tool"


@pytest.mark.parametrize(("page", "line", "error"), ERRORS, ids=_ids(ERRORS))
def test_every_error_shown_is_the_one_printed(page, line, error, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (words,) = _words(line)
    assert words[0] == "lstm-digits"
    result = CliRunner().invoke(app.app, words[1:])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [error]
    assert list(tmp_path.iterdir()) == []  # refused before anything was written


def test_the_readme_is_short_and_links_the_docs():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.encode()) <= README_LIMIT
    for page in ("install", "configuration", "sweeps", "resume", "runs", "cluster"):
        assert f"docs/{page}.md" in readme, page
    assert "Apprentissage profond / code de travail LSTM" in readme


@pytest.mark.slow
def test_nothing_refers_to_a_path_outside_the_repository():
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    outside = re.compile(r"\.\./sh[a]red|/wor[k]/|\]\(\.\./")  # [a], [k]: not this line itself
    offenders = []
    for name in tracked:
        path = ROOT / name
        if path.suffix in (".png", ".npz") or not path.is_file():
            continue
        text = path.read_text(errors="replace")
        offenders += [f"{name}: {m[0]}" for m in outside.finditer(text)]
    assert offenders == []


@pytest.mark.slow
def test_the_site_builds_with_strict(tmp_path):
    """A broken link or anchor, a page left out of the nav, or a generator that fails: CI fails."""
    mkdocs = Path(sys.executable).with_name("mkdocs")
    result = subprocess.run(
        [str(mkdocs), "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"NO_MKDOCS_2_WARNING": "1", "PATH": str(mkdocs.parent)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for page in ("reference/cli", "reference/config", "reference/modules"):
        assert (tmp_path / "site" / page / "index.html").is_file()
    cli_page = (tmp_path / "site" / "reference" / "cli" / "index.html").read_text()
    assert all(
        f"<code>{name}</code>" in cli_page for name in typer.main.get_command(app.app).commands
    )
    images = {p.name for p in (ROOT / "docs" / "images").glob("*.png")}
    assert {"mlflow-ui.png", "learning_curves.png", "confusion_matrix.png"} <= images
