"""The config files on disk: where they are, their groups and options, their keys.

Light (no Hydra, no OmegaConf): `--help` and shell completion read it. Composing is
`lstm_cli.config`'s job.
"""

from __future__ import annotations

from pathlib import Path

CONFIG_NAME = "config"
# The keys that say where a run is tracked, not what it trains: not carried to a run built on
# it (`train --from`), not compared between a sweep's points (what mattered).
WHERE_KEYS = ("tracking.uri", "tracking.parent_run_id", "tracking.from_run")
# Groups a user picks with GROUP=OPTION, and Hydra's launchers (hydra/launcher=OPTION).
GROUPS = ("experiment", "hparams_search", "prune", "hydra/launcher")
HYDRA_LAUNCHERS = ("basic",)  # Hydra's own, beside our files and the plugins'
PLUGIN_LAUNCHERS = {
    "hydra_joblib_launcher": ("joblib",),
    "hydra_submitit_launcher": ("submitit_local", "submitit_slurm"),
}


def _conf_dir() -> Path:
    """The configs: inside an installed package (lstm_cli/conf, from the repository's conf/ by
    pyproject.toml's package-dir), else the checkout's conf/ (an editable install or none)."""
    package = Path(__file__).resolve().parents[1]  # lstm_cli/
    inside = package / "conf"
    return inside if inside.is_dir() else package.parent / "conf"


CONF_DIR = _conf_dir()


def options(group: str, extra: Path | None = None) -> list[str]:
    """The options of a config group: its files here (and in `extra`, a directory of the
    user's); for hydra/launcher, also the launchers the installed plugins bring."""
    names = set()
    for root in (CONF_DIR, extra):
        if root is not None and (root / group).is_dir():
            names |= {p.stem for p in (root / group).glob("*.yaml")}
    if group == "hydra/launcher":
        names |= {*HYDRA_LAUNCHERS, *_plugin_launchers()}
    return sorted(names)


def _plugin_launchers() -> set[str]:
    """Launchers of the installed Hydra plugins (they register their configs in code)."""
    import importlib.util

    found = set()
    for plugin, launchers in PLUGIN_LAUNCHERS.items():
        try:
            if importlib.util.find_spec(f"hydra_plugins.{plugin}") is not None:
                found |= set(launchers)
        except ModuleNotFoundError:
            pass
    return found


def keys() -> dict[str, object]:
    """Every key of the default config with its default (dotted: data.scaling)."""
    import yaml

    tree = yaml.safe_load((CONF_DIR / f"{CONFIG_NAME}.yaml").read_text())
    flat: dict[str, object] = {}

    def walk(node: dict, prefix: str) -> None:
        for key, value in node.items():
            if isinstance(value, dict):
                walk(value, f"{prefix}{key}.")
            else:
                flat[f"{prefix}{key}"] = value

    walk({k: v for k, v in tree.items() if k not in ("defaults", "hydra")}, "")
    return flat


def listing() -> str:
    """The groups and their options, one line each, for `train --help`."""
    return "\n".join(f"  {group}={'|'.join(options(group))}" for group in GROUPS)


def default(key: str) -> object:
    """A default of conf/config.yaml (dotted key), for commands that do not compose the config."""
    return keys()[key]


def complete(incomplete: str) -> list[str]:
    """Completions of a `train` argument: `key=` and `group=` for a start, then values (the
    choices of a key or a group, true/false, or the key's default)."""
    from lstm_cli.config import choices

    key, eq, value = incomplete.partition("=")
    if not eq:
        found = [f"{k}=" for k in (*keys(), *GROUPS)]
        return sorted(k for k in found if k.startswith(incomplete))
    values: list[str]
    if key in GROUPS:
        values = options(key)
    elif key in CHOICE_KEYS:
        values = choices.names(getattr(choices, CHOICE_KEYS[key]))
    else:
        default_value = keys().get(key, "")
        if isinstance(default_value, bool):
            values = ["true", "false"]
        else:
            values = ["null" if default_value is None else str(default_value)]
    return [f"{key}={v}" for v in values if v.startswith(value)]


CHOICE_KEYS = {  # config keys whose values are the enums of lstm_cli.config.choices
    "cell": "Cell",
    "init": "Init",
    "output_activation": "OutputActivation",
    "data.scaling": "Scaling",
    "early_stopping.metric": "Monitored",
    "prune.metric": "Monitored",
}
