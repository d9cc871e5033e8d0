"""The docs' generated pages, made from the code at every build so that none can go stale.

- `reference/cli.md`: every command of the Typer app (its click object): usage, help,
  arguments and options with their choices, defaults and environment variables;
- `reference/config.md`: every key of conf/config.yaml with its default and comment, and its
  type and allowed values from the schema (lstm_cli/config/schema.py, lstm_cli/config/choices.py);
- `reference/modules.md`: every module of the package and its Hydra plugin, with the first
  line of its docstring (so the list follows renames);
- `performance-history.md`: bench/RESULTS.md as it is.

`hooks.py` hands them to mkdocs; `python docs/tools/reference.py` prints them.
"""

from __future__ import annotations

import dataclasses
import enum
import re
import typing
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _text(help_text: str | None) -> str:
    """A docstring as Markdown: click's \\b markers dropped, its indented blocks kept as code."""
    out, block = [], False
    for line in (help_text or "").splitlines():
        if line.strip() == "\b":
            continue
        indented = line.startswith("  ")
        if indented and not block:
            out.append("```text")
        elif not indented and block:
            out.append("```")
        block = indented
        out.append(line[2:] if indented else line)
    if block:
        out.append("```")
    return "\n".join(out).strip()


def _cell(text: object) -> str:
    """Text for a Markdown table cell: outside `code`, * _ < are literal, not markup."""
    parts = str(text).replace("|", "\\|").replace("\n", " ").split("`")
    for i in range(0, len(parts), 2):
        parts[i] = re.sub(r"([*_])", r"\\\1", parts[i]).replace("<", "&lt;")
    return "`".join(parts)


def _param_row(param, ctx) -> str:
    names = ", ".join(f"`{o}`" for o in [*param.opts, *param.secondary_opts])
    if param.param_type_name == "argument":
        names = f"`{param.metavar or param.name.upper()}`"
    flag = getattr(param, "is_flag", False)
    metavar = param.metavar or ("" if flag else param.display_type(ctx).strip("<>"))
    notes = []
    if (
        param.param_type_name == "option"
        and param.show_default
        and param.default
        not in (
            None,
            False,
        )
    ):
        notes.append(f"default: `{param.default}`")
    if getattr(param, "envvar", None):
        notes.append(f"env: `{param.envvar}`")
    if param.required:
        notes.append("required")
    help_text = " ".join([getattr(param, "help", None) or "", *(f"({n})" for n in notes)])
    return f"| {names} | {_cell(metavar)} | {_cell(help_text)} |"


def cli_page() -> str:
    """The CLI reference, from the Typer app."""
    import typer

    from lstm_cli.commands.app import app

    group = typer.main.get_command(app)
    root = group.make_context("lstm-digits", [], resilient_parsing=True)
    lines = [
        "# CLI reference",
        "",
        "Generated from the Typer app (`lstm_cli/commands/app.py`) at every build of this site; "
        "`lstm-digits COMMAND -h` prints the same.",
        "",
        "```text",
        f"lstm-digits {' '.join(group.collect_usage_pieces(root))}",
        "```",
        "",
        _text(group.help),
        "",
        *_params(group, root),
    ]
    for name, command in group.commands.items():
        ctx = command.make_context(name, [], parent=root, resilient_parsing=True)
        usage = " ".join(command.collect_usage_pieces(ctx))
        lines += ["", f"## `{name}`", "", "```text", f"lstm-digits {name} {usage}", "```", ""]
        lines += [_text(command.help), "", *_params(command, ctx)]
        if command.epilog:
            lines += ["", _text(command.epilog.replace("\n\n  ", "\n  "))]
    return "\n".join(lines).rstrip() + "\n"


def _params(command, ctx) -> list[str]:
    params = [p for p in command.get_params(ctx) if not getattr(p, "hidden", False)]
    if not params:
        return []
    return [
        "| name | values | meaning |",
        "| --- | --- | --- |",
        *(_param_row(p, ctx) for p in params),
    ]


_LINE = re.compile(r"^(?P<indent> *)(?P<key>[a-z_]+):(?P<value>[^#]*?)\s*(?:#\s*(?P<comment>.*))?$")


def config_keys() -> list[tuple[str, str, str]]:
    """(dotted key, default as written, comment) of every key of conf/config.yaml."""
    rows, sections = [], {}
    text = (ROOT / "conf" / "config.yaml").read_text()
    for line in text.split("\nhydra:")[0].splitlines():
        match = _LINE.match(line)
        if not match or match["key"] == "defaults":
            continue
        depth = len(match["indent"]) // 2
        sections[depth] = match["key"]
        value = match["value"].strip()
        if value:
            key = ".".join([*(sections[d] for d in range(depth)), match["key"]])
            rows.append((key, value, match["comment"] or ""))
    return rows


def _schema_types() -> dict[str, str]:
    """The schema's type of every key, an enum as its allowed values."""
    from lstm_cli.config.schema import Schema

    found = {}

    def walk(cls, prefix: str) -> None:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            kind = hints[f.name]
            if dataclasses.is_dataclass(kind):
                walk(kind, f"{prefix}{f.name}.")
                continue
            args = [a for a in typing.get_args(kind) if a is not type(None)] or [kind]
            name = " | ".join(
                " | ".join(m.name for m in a)
                if isinstance(a, type) and issubclass(a, enum.Enum)
                else a.__name__
                for a in args
            )
            found[f"{prefix}{f.name}"] = name + (
                " or null" if type(None) in typing.get_args(kind) else ""
            )

    walk(Schema, "")
    return found


def config_page() -> str:
    """The config reference, from conf/config.yaml's comments and the schema."""
    from lstm_cli.config import files, schema

    types = _schema_types()
    ranges = {key: what for key, _, what in schema._RANGES}  # read only: the ranges it checks
    lines = [
        "# Config reference",
        "",
        "Generated at every build of this site from `conf/config.yaml` (each key's default and "
        "comment) and the schema in `lstm_cli/config/schema.py` (its type, allowed values and "
        "range). Type a key as `lstm-digits train KEY=VALUE`; `lstm-digits train --cfg job` "
        "prints the resolved values.",
        "",
        "| key | default | type, allowed values | meaning |",
        "| --- | --- | --- | --- |",
    ]
    for key, default, comment in config_keys():
        kind = types.get(key, "")
        if key in ranges:
            kind += f"; {ranges[key]}"
        lines.append(f"| `{key}` | `{default}` | {_cell(kind)} | {_cell(comment)} |")
    lines += [
        "",
        "## Config groups",
        "",
        "Chosen with `GROUP=OPTION`:",
        "",
        "| group | options |",
        "| --- | --- |",
    ]
    for group in files.GROUPS:
        lines.append(f"| `{group}` | {', '.join(f'`{o}`' for o in files.options(group))} |")
    return "\n".join(lines) + "\n"


def history_page() -> str:
    """bench/RESULTS.md, the measurements' history, as a page of the site."""
    text = (ROOT / "bench" / "RESULTS.md").read_text()
    note = (
        "\n\n*This page is `bench/RESULTS.md` of the repository, included at every build of "
        "the site; its paths are the repository's.*\n"
    )
    head, _, rest = text.partition("\n")
    return head + note + rest


def modules_page() -> str:
    """Every module of the package and its plugin, by folder, with its docstring's first line."""
    import ast

    lines = [
        "# Module list",
        "",
        "Generated at every build of this site from the modules' docstrings.",
    ]
    for top in ("lstm_cli", "hydra_plugins"):
        folder = None
        for path in sorted((ROOT / top).rglob("*.py")):
            where = path.parent.relative_to(ROOT).as_posix()
            if where != folder:
                folder = where
                lines += ["", f"## `{where}/`", "", "| module | what it owns |", "| --- | --- |"]
            doc = ast.get_docstring(ast.parse(path.read_text())) or ""
            first = " ".join(doc.split("\n\n")[0].split())
            lines.append(f"| `{path.name}` | {_cell(first)} |")
    return "\n".join(lines) + "\n"


PAGES = {
    "reference/cli.md": cli_page,
    "reference/config.md": config_page,
    "reference/modules.md": modules_page,
    "performance-history.md": history_page,
}

if __name__ == "__main__":
    for name, make in PAGES.items():
        print(f"<!-- {name} -->\n{make()}")
