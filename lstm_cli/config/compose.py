"""Composing the config as Hydra will, before Hydra runs: typos fail in one line, early.

`preflight` reads the command line with Hydra's own parser and composes the config for every
value a sweep asks for, so a bad key or value is refused before any job starts or anything is
tracked. Hydra's errors are reworded from the attributes its exceptions carry.
"""

from __future__ import annotations

import copy
import difflib
import math
import re
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from lstm_cli.config import files, launchers, schema
from lstm_cli.config.choices import RENAMED_CELLS, Cell
from lstm_cli.config.files import CONF_DIR, CONFIG_NAME
from lstm_cli.runtime.errors import UserError

PARENT_KEY = "tracking.parent_run_id"  # set by a sweep on its jobs' command line
HYDRA_WORDS = ("null", "true", "false", "nan", "inf")  # unquoted, Hydra reads these as no text

schema.register()
launchers.register()


@dataclass(frozen=True)
class Source:
    """Where the config comes from: the packaged configs, a directory of the user's searched
    after them (Hydra's -cd: presets, configs of their own) and the primary config's name
    (-cn, e.g. a config of the user's whose defaults list starts with the packaged `config`)."""

    extra: Path | None = None
    name: str = CONFIG_NAME
    primary: Path = CONF_DIR

    @classmethod
    def from_args(cls, args) -> Source:
        """The source Hydra's parsed arguments name; a UserError for a directory that is not
        one or holds no config."""
        if args.config_path is not None:  # Hydra reads it relative to our module, not the cwd
            raise UserError(
                "--config-path replaces the packaged configs: give -cd DIR (searched after them) "
                "and -cn NAME to use configs of your own"
            )
        return cls(_config_dir(args.config_dir, "--config-dir"), args.config_name or CONFIG_NAME)

    def search(self) -> tuple[Path, list[str]]:
        """The directory to compose from and the overrides that add the other one, as close
        to `hydra.main`'s search path (packaged configs, then -cd) as Hydra's compose API
        allows: it finds the primary config in its first directory only, so a config of the
        user's (-cn) is composed from theirs, with the packaged ones searched after."""
        if self.extra is None:
            return self.primary, []
        if self.name != CONFIG_NAME and (self.extra / f"{self.name}.yaml").is_file():
            return self.extra, [f"hydra.searchpath=[file://{self.primary}]"]
        return self.primary, [f"hydra.searchpath=[file://{self.extra}]"]


def _config_dir(given: str | None, flag: str) -> Path | None:
    if given is None:
        return None
    path = Path(given).expanduser().resolve()
    if not path.is_dir():
        raise UserError(f"{flag} {given}: no such directory")
    if not any(path.rglob("*.yaml")):
        raise UserError(f"{flag} {given}: the directory holds no config (*.yaml)")
    return path


def compose(
    overrides: list[str], hydra_node: bool = False, source: Source | None = None
) -> DictConfig:
    """The config for `overrides`, composed as Hydra would (its own `hydra` node if asked)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    directory, searched = (source or Source()).search()
    with initialize_config_dir(config_dir=str(directory), version_base="1.3"):
        return hydra_compose(
            config_name=(source or Source()).name,
            overrides=[*searched, *overrides],
            return_hydra_config=hydra_node,
        )


def describe(ex: BaseException) -> str:
    """A Hydra/OmegaConf composition error as one line that says what to change."""
    from hydra.errors import MissingConfigException, OverrideParseException

    if isinstance(ex, OverrideParseException):
        return f"cannot parse the override '{ex.override}': write key=value"
    if isinstance(ex, MissingConfigException):  # an unknown config group option
        missing = ex.missing_cfg_file or "the config"
        if not ex.options:
            return f"could not find '{missing}'"
        group = missing.rpartition("/")[0]
        return f"could not find '{missing}'; available options in '{group}': " + ", ".join(
            ex.options
        )
    cause = ex.__cause__ if isinstance(ex.__cause__, OmegaConfBaseException) else ex
    key = getattr(cause, "full_key", None)
    said = re.search(r"full_key: (\S+)", str(cause))  # a plain error of OmegaConf's says it
    key = key or (said[1] if said else None)
    if key and key.startswith("hydra.sweeper.params"):  # the basic sweeper's are null: no merge
        return (
            f"{key} cannot be set on the command line: sweep the keys themselves "
            "(-m hidden_size=8,16,32) or give params: in a config of your own (-cd DIR)"
        )
    if isinstance(cause, ConfigKeyError | ConfigAttributeError) and " not in " in str(cause):
        known = sorted(schema.flatten(compose([])))  # the packaged config's keys
        close = difflib.get_close_matches(key, known, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else f"; known keys: {', '.join(known)}"
        return f"unknown config key '{key}'{hint}"
    lines = [line.strip() for line in str(getattr(cause, "msg", cause)).splitlines()]
    skip = ("full_key:", "object_type", "reference_type")
    text = " ".join(line for line in lines if line and not line.startswith(skip))
    return f"{key}: {text}" if key else text


def _composed(overrides: list[str], source: Source, hydra_node: bool = False) -> DictConfig:
    """`compose`, its failure a UserError."""
    try:
        return compose(overrides, hydra_node=hydra_node, source=source)
    except Exception as ex:
        raise UserError(describe(ex)) from None


def _is_glob(override: Any) -> bool:
    from hydra.core.override_parser.types import ValueType

    return override.value_type == ValueType.GLOB_CHOICE_SWEEP


def _takes_value(cfg: DictConfig, override: Any, value: Any) -> bool:
    """Whether a sweep's `value` for a plain key of `cfg` (no group, no hydra.*, no +/~) is
    accepted as composing would accept it: set on a copy, checked by the schema's types. A
    sweep of 16 seeds was 16 compositions (1.2 s before the first job could start); anything
    this does not take is composed (for Hydra's own error)."""
    from hydra.core.override_parser.types import OverrideType

    key = override.get_key_element()
    if override.type != OverrideType.CHANGE or override.package or key.startswith("hydra."):
        return False
    if not isinstance(OmegaConf.select(cfg, key, default=cfg), str | int | float | bool):
        return False  # not a value of the config (a group, a section, unknown): compose
    trial = copy.deepcopy(cfg)  # typed and struct, as composed
    try:
        OmegaConf.update(trial, key, value, merge=True)
    except OmegaConfBaseException:
        return False
    return True


def _parse(overrides: list[str]) -> list:
    """Hydra's parsed overrides; a UserError if one cannot be parsed."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        return OverridesParser.create().parse_overrides(overrides)
    except Exception as ex:
        raise UserError(describe(ex)) from None


@dataclass(frozen=True)
class Request:
    """What a `train` command line asks for, checked.

    Attributes:
        argv: the command line after `train`, as Hydra will read it.
        cfg: the config without the swept values (None when Hydra only prints something).
        overrides: the overrides as typed.
        multirun: whether a sweep will run.
        launcher: the sweep's launcher settings (hydra.launcher), if a sweep runs.
        sweeper: the sweep's sweeper settings (hydra.sweeper), if a sweep runs.
    """

    argv: list[str]
    cfg: DictConfig | None
    overrides: list[str] = field(default_factory=list)
    multirun: bool = False
    launcher: DictConfig | None = None
    sweeper: DictConfig | None = None


def preflight(argv: list[str]) -> Request:
    """Compose the config for each value the command line asks for; raise UserError on a typo.

    A single run also gets its ranges checked here, so nothing is tracked for a bad value. In a
    sweep, ranges are checked per job, so one bad grid point fails alone.
    """
    from lstm_cli.runtime import internals

    args, unknown = internals.hydra_arguments(argv)
    _check_flags(args, unknown)
    source = Source.from_args(args)
    if args.help or args.hydra_help or args.info:
        return Request(argv, None, args.overrides)
    parsed = _parse(args.overrides)
    _check_renamed(parsed)
    swept = [o for o in parsed if o.is_sweep_override()]
    if swept and not args.multirun:
        raise UserError(
            f"{swept[0].input_line} asks for a sweep: add -m (or quote a list value: 'key=[a,b]')"
        )
    fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
    base = _composed(fixed, source, hydra_node=True)
    expanded = _expand_value_globs(argv, swept, base)
    if expanded != argv:  # Hydra's glob picks among a group's options: a key's, here
        return preflight(expanded)
    for o in swept:
        _check_swept_values(o, base, fixed, source)
    if args.cfg or args.resolve:  # Hydra prints the config; nothing runs
        return Request(argv, None, args.overrides)
    launcher = base.hydra.launcher
    cfg = OmegaConf.masked_copy(base, [k for k in base if k != "hydra"])
    if not args.multirun:
        _check_single_run(cfg)
        return Request(argv, cfg, args.overrides)
    if launcher.get("points_per_task", 1) < 1:
        raise UserError("hydra.launcher.points_per_task must be at least 1 (sweep points per job)")
    return Request(argv, cfg, args.overrides, True, launcher, base.hydra.sweeper)


def _check_flags(args: Any, unknown: list[str]) -> None:
    """Refuse a flag Hydra does not know, and Hydra's shell completion, in one line."""
    if unknown:  # a usage error, in one line as every other (not argparse's usage box)
        raise UserError(
            f"lstm-digits train: no such option: {unknown[0]} (Hydra's flags are -m, --cfg, "
            "-cd, -cn and the others of: lstm-digits train -h)"
        )
    if args.shell_completion:
        raise UserError(
            "Hydra's shell completion (-sc) does not fit this command line: "
            "`lstm-digits --install-completion` completes commands, options and overrides"
        )


def _expand_value_globs(argv: list[str], swept: list, base: DictConfig) -> list[str]:
    """`argv` with each glob over a choice key's values (`cell=glob(*)`,
    `cell=glob(n*,exclude=nfg)`) written out as the values it picks (`cell=article,lstm,...`):
    Hydra's glob picks among a config group's options only."""
    import fnmatch

    out = list(argv)
    for o in swept:
        if not _is_glob(o):
            continue
        value = OmegaConf.select(base, o.get_key_element(), default=None)
        if not isinstance(value, Enum):  # a group's options: Hydra expands it
            continue
        pattern = o.value()
        picked = [
            member.value
            for member in type(value)
            if any(fnmatch.fnmatchcase(member.value, p) for p in pattern.include)
            and not any(fnmatch.fnmatchcase(member.value, p) for p in pattern.exclude)
        ]
        if not picked:
            raise UserError(
                f"{o.input_line} picks none of {', '.join(m.value for m in type(value))}"
            )
        out = [f"{o.get_key_element()}={','.join(picked)}" if a == o.input_line else a for a in out]
    return out


def _check_renamed(parsed: list) -> None:
    """Refuse, in one line, the names a key or a value had before it was renamed: the cells
    `seed` and `standard` (`seed` is the random seed's name), the key `gates`."""
    for o in parsed:
        key = o.get_key_element()
        if key == "gates":
            raise UserError("gates= is now kernel= (auto, fused or ops)")
        if key != "cell":
            continue
        if _is_glob(o):  # its values are written out first (`_expand_value_globs`)
            continue
        values = list(o.sweep_string_iterator()) if o.is_discrete_sweep() else [o.value()]
        for value in values:
            if str(value) in RENAMED_CELLS:
                raise UserError(
                    f"cell={value} is now cell={RENAMED_CELLS[str(value)]} (seed names the random "
                    f"seed); the cells: {', '.join(c.value for c in Cell)}"
                )


def _check_swept_values(o: Any, base: DictConfig, fixed: list[str], source: Source) -> None:
    """Each value the sweep override `o` asks for composes (a glob picks among the group's own
    options: Hydra expands it with its config loader)."""
    if not o.is_discrete_sweep() or _is_glob(o):
        return
    key = o.get_key_element()
    for value, text in zip(o.sweep_iterator(), o.sweep_string_iterator(), strict=True):
        if not _takes_value(base, o, value):  # anything else is composed, as Hydra will
            _composed([*fixed, f"{key}={text}"], source, key.startswith("hydra"))


def _check_single_run(cfg: DictConfig) -> None:
    """A single run's ranges, and nothing a sweep alone can do."""
    schema.check(cfg)
    if cfg.prune.kind.value != "none":
        raise UserError(
            f"prune={cfg.prune.kind.value} compares the points of a sweep: add -m and sweep "
            "some values (a single run has nothing to be compared with)"
        )


def total_points(request: Request) -> int | None:
    """How many points the sweep of `request` will run: the basic sweeper's grid, expanded as
    Hydra does (its `hydra.sweeper.params`, then the command line, a later value of a key
    replacing an earlier one; the product of the values' counts); optuna's `n_trials`; None
    for any other sweeper, or if it cannot be known (an interval, a glob)."""
    try:
        sweeper = request.sweeper
        target = str(sweeper.get("_target_", ""))
        if target.endswith("OptunaSweeper"):
            return int(sweeper.n_trials)
        if not target.endswith("BasicSweeper"):
            return None
        from hydra.core.override_parser.overrides_parser import OverridesParser

        params = [f"{key}={value}" for key, value in (sweeper.get("params") or {}).items()]
        counts: dict[str, int] = {}
        for o in OverridesParser.create().parse_overrides([*params, *request.overrides]):
            if o.is_sweep_override() and not o.is_discrete_sweep():
                return None
            swept = o.is_sweep_override()
            counts[o.get_key_element()] = len(list(o.sweep_string_iterator())) if swept else 1
        return math.prod(counts.values())
    except Exception:  # a sweep Hydra expands only with its config loader (glob), or refuses
        return None


def portable_argv(request: Request) -> list[str]:
    """The command line of `request` as it runs again from any directory (`resume SWEEP`):
    its flags that choose what runs (-m, -cd as an absolute path, -cn) and its overrides."""
    from lstm_cli.runtime import internals

    args, _ = internals.hydra_arguments(request.argv)
    argv = ["-m"] if args.multirun else []
    if args.config_dir is not None:
        argv += ["-cd", str(Path(args.config_dir).expanduser().resolve())]
    if args.config_name is not None:
        argv += ["-cn", args.config_name]
    return [*argv, *args.overrides]


@dataclass(frozen=True)
class Touched:
    """What a `train` command line sets, for `train --from RUN` (see `touched`).

    Attributes:
        cfg: the config it composes, its swept values left out (where to find RUN: its
            tracking.uri and tracking.experiment).
        default: the config with no override, from the same configs (-cd, -cn).
        keys: the keys it sets: named (a group or preset too), changed by a group or a preset
            (by any of a sweep's values), or searched by its sweeper.
    """

    cfg: DictConfig
    default: DictConfig
    keys: frozenset[str]


def touched(argv: list[str]) -> Touched:
    """The keys the command line `argv` sets, and what it composes (a UserError on a typo)."""
    from lstm_cli.runtime import internals

    args, unknown = internals.hydra_arguments(argv)
    _check_flags(args, unknown)
    source = Source.from_args(args)
    parsed = _parse(args.overrides)
    fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
    base = _composed(fixed, source, hydra_node=True)
    cfg = OmegaConf.masked_copy(base, [k for k in base if k != "hydra"])
    default = _composed([], source)
    plain, defaults = schema.flatten(cfg), schema.flatten(default)
    keys = {k for k, v in plain.items() if v != defaults.get(k)}
    for o in parsed:
        key = o.get_key_element().lstrip("+~")
        keys.add(key)
        if key in plain or key.startswith("hydra") or not o.is_sweep_override():
            continue
        choices = (
            files.options(key, source.extra) if _is_glob(o) else list(o.sweep_string_iterator())
        )
        for choice in choices:  # a group swept: what any of its options sets
            other = schema.flatten(_composed([*fixed, f"{key}={choice}"], source))
            keys |= {k for k, v in other.items() if v != plain.get(k)}
    keys |= {str(k) for k in (base.hydra.sweeper.get("params") or {})}  # a search's space
    return Touched(cfg, default, frozenset(keys))


def as_overrides(values: dict[str, Any]) -> list[str]:
    """`key=value` overrides that set each of `values` (flattened: `schema.flatten`'s) as
    written: null, true, numbers as Python writes them, a name as is (cell=gru), any other
    text quoted (Hydra would read `1e3` or `true` as no text)."""

    def text(value: Any) -> str:
        if value is None:
            return "null"
        if isinstance(value, bool):
            return str(value).lower()
        if isinstance(value, int | float):
            return repr(value)
        if re.fullmatch(r"[A-Za-z_][\w-]*", str(value)) and str(value).lower() not in HYDRA_WORDS:
            return value
        quoted = str(value).replace("\\", "\\\\").replace("'", "\\'")
        return f"'{quoted}'"

    return [f"{key}={text(value)}" for key, value in values.items()]


def job_overrides(task_overrides: list[str]) -> list[str]:
    """A job's overrides as the user typed them: without the one a sweep adds (PARENT_KEY)."""
    return [o for o in task_overrides if o.partition("=")[0].lstrip("+~") != PARENT_KEY]
