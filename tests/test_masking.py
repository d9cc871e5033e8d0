"""Passwords in URIs are masked wherever a URI is stored or shown."""

from __future__ import annotations

import pytest

from lstm_cli.runtime.errors import UserError, one_line
from lstm_cli.runtime.masking import mask, mask_files, split_credentials


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("http://alice:s3cret@127.0.0.1:5000", "http://alice:***@127.0.0.1:5000"),
        ("postgresql://mlflow:pw@db:5432/mlflow", "postgresql://mlflow:***@db:5432/mlflow"),
        ("https://u:p@ss@host/path", "https://u:***@host/path"),  # an unencoded '@' in it
        (
            "tracking.uri=mysql+pymysql://a:b@h/d seed=1",
            "tracking.uri=mysql+pymysql://a:***@h/d seed=1",
        ),
        ("http://alice@host:5000", "http://alice@host:5000"),  # no password: nothing to hide
        ("sqlite:////tmp/outputs/mlflow.db", "sqlite:////tmp/outputs/mlflow.db"),
        ("hidden_size=50 epochs=3", "hidden_size=50 epochs=3"),
    ],
)
def test_passwords_in_uris_are_masked(text, expected):
    assert mask(text) == expected


def test_credentials_are_split_from_a_url():
    assert split_credentials("http://alice:p%40ss@127.0.0.1:5000/x") == (
        "http://127.0.0.1:5000/x",
        "alice",
        "p@ss",
    )
    assert split_credentials("http://127.0.0.1:5000") == ("http://127.0.0.1:5000", None, None)


def test_error_lines_never_show_a_password():
    line = one_line(UserError("cannot reach http://alice:s3cret@host:5000: refused"))
    assert line == "cannot reach http://alice:***@host:5000: refused"
    assert "s3cret" not in one_line(RuntimeError("postgresql://m:s3cret@db/m failed"))


def test_hydras_escaped_overrides_are_masked_too():
    escaped = r"tracking.uri=http\://alice\:s3cret@127.0.0.1\:5000"
    assert mask(escaped) == r"tracking.uri=http\://alice\:***@127.0.0.1\:5000"


def test_files_are_masked_in_place_and_others_left_alone(tmp_path):
    kept = tmp_path / "overrides.yaml"
    kept.write_text("- tracking.uri=http://alice:s3cret@host:5000\n- seed=1\n")
    clean = tmp_path / "config.yaml"
    clean.write_text("seed: 1\n")
    before = clean.stat().st_mtime_ns
    mask_files([kept, clean, tmp_path / "missing.yaml"])
    assert kept.read_text() == "- tracking.uri=http://alice:***@host:5000\n- seed=1\n"
    assert clean.stat().st_mtime_ns == before  # nothing to hide: not rewritten
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml", "overrides.yaml"]
