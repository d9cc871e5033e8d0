"""Config tier: every config composes, defaults are the article's, bad values are rejected."""

from __future__ import annotations

import pytest

from lstm_cli.config import compose, schema
from lstm_cli.runtime.errors import UserError


def test_defaults_reproduce_the_seed_article():
    cfg = compose.compose([])
    assert (cfg.hidden_size, cfg.epochs, cfg.batch_size, cfg.learning_rate) == (50, 100, 100, 1e-3)
    assert (cfg.output_activation.value, cfg.cell.value, cfg.init.value) == (
        "tanh",
        "article",
        "zeros",
    )
    assert (cfg.data.test_size, cfg.data.split_seed) == (0.2, 42)
    schema.check(cfg)


def test_flatten_gives_dotted_params_with_enum_names():
    flat = schema.flatten(compose.compose(["hidden_size=7", "output_activation=relu"]))
    assert flat["hidden_size"] == 7 and flat["output_activation"] == "relu"
    assert flat["data.test_size"] == 0.2 and "tracking.experiment" in flat


@pytest.mark.parametrize(
    "overrides",
    [
        ["cell=lstm", "init=glorot", "output_activation=linear", "data.scaling=unit"],
        ["threads=1", "tracking.uri=sqlite:///x.db", "seed=3"],
    ],
)
def test_valid_overrides_pass_preflight(overrides):
    request = compose.preflight(overrides)
    assert request.overrides == overrides and not request.multirun
    assert request.launcher is None
    for override in overrides:
        key, value = override.split("=", 1)
        assert str(schema.flatten(request.cfg)[key]) == value


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["hidden_size=0"], "hidden_size=0 is invalid: it must be a positive integer"),
        (["hidden_size=-5"], "hidden_size=-5 is invalid"),
        (["hidden_size=abc"], "hidden_size"),
        (["epochs=0"], "epochs=0 is invalid"),
        (["batch_size=0"], "batch_size=0 is invalid"),
        (["learning_rate=-1"], "learning_rate=-1.0 is invalid: it must be finite and > 0"),
        (["output_activation=bogus"], "tanh, linear, sigmoid, relu"),
        (["cell=bogus"], "article, lstm, peephole, cifg, nig, nfg, nog, niaf, gru, rnn"),
        (["cell=seed"], "cell=seed is now cell=article (seed names the random seed)"),
        (["-m", "cell=lstm,standard"], "cell=standard is now cell=lstm"),
        (["gates=ops"], "gates= is now kernel= (auto, fused or ops)"),
        (["layers=0"], "layers=0 is invalid: it must be a positive integer"),
        (["data.reading=diagonal"], "expected one of [rows, columns, pixels, permuted]"),
        (["data.permutation_seed=-1"], "data.permutation_seed=-1 is invalid"),
        (["cell=rnn", "kernel=fused"], "kernel=fused computes one layer of cell="),
        (["layers=2", "kernel=fused"], "layers=2 runs on TensorFlow's ops"),
        (["hiden_size=100"], "unknown config key 'hiden_size'; did you mean 'hidden_size'?"),
        (["data.test_size=1.5"], "data.test_size=1.5 is invalid"),
        (["learning_rate=inf"], "learning_rate=inf is invalid: it must be finite and > 0"),
        (["hidden_size=8,16"], "hidden_size=8,16 asks for a sweep: add -m"),
        (["hidden_size=="], "cannot parse the override 'hidden_size=='"),
        (["hydra/launcher=bogus"], "could not find 'hydra/launcher/bogus'"),
        (["data.foo=1"], "unknown config key 'data.foo'"),
        (["hydra/launcher=bogus"], "available options in 'hydra/launcher': basic, joblib"),
        (
            ["-m", "hydra/launcher=slurm", "hydra.launcher.points_per_task=0", "seed=1,2"],
            "hydra.launcher.points_per_task must be at least 1",
        ),
    ],
)
def test_bad_values_are_rejected_in_one_line(overrides, message):
    with pytest.raises(UserError) as info:
        compose.preflight(overrides)
    text = str(info.value)
    assert message in text
    assert "\n" not in text


def test_a_bad_value_anywhere_in_a_grid_is_a_type_error_before_the_sweep():
    with pytest.raises(UserError, match="hidden_size"):
        compose.preflight(["-m", "hidden_size=10,abc"])


@pytest.mark.parametrize(
    ("grid", "message"),
    [
        (["seed=range(1,17)", "cell=article,nope"], "cell: Invalid value 'nope'"),
        (["seed=1,2.5"], "seed: Value '2.5' of type 'float' could not be converted"),
        (["data.scaling=raw,bogus"], "data.scaling: Invalid value 'bogus'"),
        (["experiment=debug,nope"], "could not find 'experiment/nope'"),
        (["hidden_size=8,16", "data.foo=1,2"], "unknown config key 'data.foo'"),
        (["hydra/launcher=joblib", "hydra.launcher.n_jobs=1,x"], "n_jobs"),
    ],
)
def test_every_value_of_a_sweep_is_checked_before_it_starts(grid, message):
    # Plain values are set on the composed config (its schema's types), the rest composed.
    with pytest.raises(UserError, match=message):
        compose.preflight(["-m", *grid])


def test_a_sweep_of_values_and_groups_passes_preflight():
    grid = [
        "seed=range(1,17)",
        "threads=null,2",
        "experiment=debug,wide",
        "+foo=1,2",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=1,2",
    ]
    request = compose.preflight(["-m", *grid])
    assert request.multirun and request.cfg.seed == 0  # without the swept keys


def test_a_glob_of_presets_is_left_to_hydra_to_expand():
    request = compose.preflight(["-m", "experiment=glob(*)", "seed=1,2"])
    assert request.multirun and request.cfg.seed == 0


def test_the_basic_sweepers_params_on_the_command_line_say_what_to_do_instead():
    with pytest.raises(UserError) as info:
        compose.preflight(["-m", "hydra.sweeper.params={hidden_size:'8,16'}"])
    text = str(info.value)
    assert text.startswith("hydra.sweeper.params cannot be set on the command line")
    assert "-m hidden_size=8,16,32" in text and "\n" not in text


def test_range_errors_in_a_sweep_are_left_to_their_job():
    request = compose.preflight(["-m", "hidden_size=10,0"])
    assert request.multirun and request.cfg.hidden_size == 50  # without the swept key
    assert request.launcher._target_.endswith("BasicLauncher")  # what runs the jobs


def test_printing_the_config_starts_no_sweep():
    request = compose.preflight(["--cfg", "job", "hidden_size=0"])
    assert request.cfg is None and not request.multirun


@pytest.mark.parametrize(
    ("preset", "expected"),
    [
        ("article", {"hidden_size": 50, "cell": "article", "init": "zeros", "data.scaling": "raw"}),
        (
            "keras",
            {
                "cell": "lstm",
                "init": "glorot",
                "output_activation": "linear",
                "data.scaling": "unit",
            },
        ),
        ("wide", {"hidden_size": 256}),
        (
            "debug",
            {"epochs": 3, "tracking.log_model": False, "tracking.experiment": "lstm-digits-debug"},
        ),
    ],
)
def test_every_preset_composes_and_sets_what_it_says(preset, expected):
    flat = schema.flatten(compose.preflight([f"experiment={preset}"]).cfg)
    assert {k: flat[k] for k in expected} == expected


def test_the_article_preset_is_the_default_run():
    article = schema.flatten(compose.preflight(["experiment=article"]).cfg)
    assert article == schema.flatten(compose.compose([]))


def test_a_users_config_directory_adds_presets_and_configs(tmp_path):
    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "mine.yaml").write_text(
        "# @package _global_\nhidden_size: 7\ndata:\n  scaling: unit\n"
    )
    (tmp_path / "lab.yaml").write_text("defaults:\n  - config\n  - _self_\nepochs: 5\n")
    mine = compose.preflight(["-cd", str(tmp_path), "experiment=mine", "seed=2"]).cfg
    assert (mine.hidden_size, mine.data.scaling.value, mine.seed) == (7, "unit", 2)
    lab = compose.preflight(["--config-dir", str(tmp_path), "-cn", "lab"]).cfg
    assert (lab.epochs, lab.hidden_size) == (5, 50)  # the packaged defaults, then the user's
    searched = compose.preflight([f"hydra.searchpath=[file://{tmp_path}]", "experiment=mine"])
    assert searched.cfg.hidden_size == 7


def test_precision_defaults_to_fp32_and_bf16_is_refused_where_the_cpu_lacks_it(monkeypatch):
    from lstm_cli.runtime import hardware

    assert compose.compose([]).precision.value == "fp32"
    monkeypatch.setattr(hardware, "has_bf16", lambda: False)
    with pytest.raises(UserError) as info:
        compose.preflight(["precision=bf16"])
    assert "precision=bf16 needs a CPU with bfloat16 instructions" in str(info.value)
    assert "\n" not in str(info.value)
    monkeypatch.setattr(hardware, "has_bf16", lambda: True)
    assert compose.preflight(["precision=bf16"]).cfg.precision.value == "bf16"
    with pytest.raises(UserError, match="fp32, bf16"):
        compose.preflight(["precision=fp16"])


def test_bf16_support_is_read_from_the_cpu_flags(tmp_path):
    from lstm_cli.runtime import hardware

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f\n")
    assert not hardware.has_bf16(cpuinfo)
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16\n")
    assert hardware.has_bf16(cpuinfo)
    assert not hardware.has_bf16(tmp_path / "missing")
