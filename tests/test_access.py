"""A tracking server that checks who asks (MLflow's basic-auth app): its refusals told in one
line that names what was refused and what it needs, the credentials masked, the UI's warning.

Fast: MLflow's own exceptions, as its client raises them for a 401 and a 403, stand in for the
server (the cluster tier, tests/test_team_server.py, runs the real one).
"""

from __future__ import annotations

import pytest
import requests
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import PERMISSION_DENIED, UNAUTHENTICATED

from lstm_cli.commands.ui import exposure_warning, is_loopback
from lstm_cli.runtime.errors import (
    AccessRefused,
    StoreUnavailable,
    UserError,
    access_code,
    needs,
    one_line,
)
from lstm_cli.runtime.masking import mask, mask_secrets
from lstm_cli.tracking.writer import classify, describe, retrying

SERVER = "http://127.0.0.1:5055"
VARIABLES = "set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN)"


def refusal(code: int) -> MlflowException:
    """What MLflow's client raises for the basic-auth app's 401 or 403."""
    endpoint, body = "/api/2.0/mlflow/runs/create", "Permission denied"
    error = UNAUTHENTICATED if code == 401 else PERMISSION_DENIED
    text = f"API request to endpoint {endpoint} failed with error code {code} != 200. "
    return MlflowException(f"{text}Response body: '{body}'", error_code=error)


@pytest.fixture
def as_user(monkeypatch):
    """Credentials in MLflow's variables, as a user of the team server sets them."""

    def login(user: str | None, password: str | None = None, token: str | None = None):
        for name, value in (("USERNAME", user), ("PASSWORD", password), ("TOKEN", token)):
            if value is None:
                monkeypatch.delenv(f"MLFLOW_TRACKING_{name}", raising=False)
            else:
                monkeypatch.setenv(f"MLFLOW_TRACKING_{name}", value)

    return login


def test_no_credentials_names_the_variables_to_set(as_user):
    as_user(None)
    assert str(AccessRefused(401, SERVER)) == (
        f"the tracking server {SERVER} asks who you are (401): {VARIABLES}"
    )


def test_a_wrong_password_names_the_user_and_never_the_password(as_user):
    as_user("alice", "wrong-password")
    line = one_line(AccessRefused(401, "http://127.0.0.1:5055"))
    assert line == (
        f"the tracking server {SERVER} did not take the credentials of user alice (401): "
        f"{VARIABLES}"
    )
    as_user(None)
    line = one_line(AccessRefused(401, "http://bob:s3cret@127.0.0.1:5055"))
    assert "user bob" in line and "s3cret" not in line  # the URI's user, its password masked


def test_a_token_is_named_as_the_token(as_user):
    as_user(None, token="t0ken-value")
    assert "of the token in MLFLOW_TRACKING_TOKEN (401)" in str(AccessRefused(401, SERVER))


def test_a_403_names_what_was_asked_and_the_permission_it_needs(as_user):
    as_user("bob", "pw-of-bob")
    doing = "log runs into experiment 'team'"
    with (
        pytest.raises(AccessRefused) as refused,
        needs("EDIT permission on it", lambda: doing, SERVER),
    ):
        raise refusal(403)
    assert one_line(refused.value) == (
        f"user bob may not log runs into experiment 'team' on the tracking server {SERVER} "
        "(403): that needs EDIT permission on it; ask its owner or the server's admin for it"
    )
    assert isinstance(refused.value, UserError)  # exit 2, as any refusal of what was asked


def test_a_refusal_is_found_behind_the_errors_raised_from_it():
    try:
        try:
            raise refusal(403)
        except MlflowException as ex:
            raise StoreUnavailable("the store said no") from ex
    except StoreUnavailable as outer:
        assert access_code(outer) == 403
    assert access_code(refusal(401)) == 401
    artifacts = requests.Response()  # the artifact repository raises requests' own errors
    artifacts.status_code = 403
    assert access_code(requests.HTTPError("403 Client Error", response=artifacts)) == 403
    assert access_code(MlflowException("no such run", error_code="RESOURCE_DOES_NOT_EXIST")) is None


def test_needs_lets_every_other_error_through():
    with (
        pytest.raises(ValueError, match="a bad value"),
        needs("EDIT permission on it", lambda: "never asked", SERVER),
    ):
        raise ValueError("a bad value")


def test_a_refusal_no_caller_explained_is_still_one_line(as_user):
    as_user("bob", "pw-of-bob")
    assert one_line(refusal(403)) == (
        "the tracking server refused user bob (403): ask its admin for the permission"
    )


def test_a_credential_revoked_during_a_run_is_a_store_fault_told_at_once(as_user):
    """Not retried for tracking.outage_minutes: a revoked credential does not come back alone."""
    as_user("alice", "old-password")
    calls = []

    def write():
        calls.append(1)
        raise refusal(401)

    with pytest.raises(StoreUnavailable) as fault:
        retrying(write, SERVER, limit_s=600)
    assert len(calls) == 1 and classify(refusal(401)) == "refused"
    assert str(fault.value) == (
        f"the tracking server {SERVER} stopped taking the credentials of user alice (401): "
        f"{VARIABLES} to working ones"
    )
    fault.value.run_id = "9aeabbd5b28147cf99eb49432c3c1bd8"
    assert str(fault.value).endswith(
        "; then go on with: lstm-digits resume 9aeabbd5b28147cf99eb49432c3c1bd8"
    )
    assert describe("refused", SERVER, 600, refusal(403)) == (
        f"the tracking server {SERVER} stopped letting user alice write this run (403): "
        "get EDIT permission on its experiment back"
    )  # "Permission denied" is no read-only disk


def test_the_credential_variables_are_masked_in_what_is_shown(as_user):
    as_user("alice", "s3cret-pass", token="t0ken-value")
    assert mask_secrets("sent s3cret-pass and t0ken-value") == "sent *** and ***"
    assert "s3cret-pass" not in one_line(RuntimeError("header Basic s3cret-pass"))
    assert mask("learning_rate=s3cret-pass") == "learning_rate=s3cret-pass"  # records: as given
    as_user("alice", "abc")  # too short to be told from an ordinary word: left as it is
    assert mask_secrets("abc") == "abc"


def test_only_both_variables_name_a_user_as_mlflow_sends_them(as_user):
    as_user("admin")  # a user without a password: MLflow sends nothing
    assert "asks who you are" in str(AccessRefused(401, SERVER))
    as_user("admin", token="t0ken-value")  # ... or the token
    assert "of the token in MLFLOW_TRACKING_TOKEN" in str(AccessRefused(401, SERVER))
    as_user(None)
    assert "of user bob" in str(AccessRefused(401, "http://bob:pw@127.0.0.1:5055"))


def test_a_refusal_told_already_is_no_store_fault(as_user):
    """A registry refusal at the end of a run (tracking.register) keeps its own words."""
    as_user("bob", "pw-of-bob")
    told = AccessRefused(403, SERVER, "register a new version of model 'm'", "EDIT permission")

    def write():
        raise told

    with pytest.raises(AccessRefused) as raised:
        retrying(write, SERVER, limit_s=600)
    assert raised.value is told and classify(told) is None


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.1.1", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("192.168.1.20", False),
        ("my-laptop.local", False),
    ],
)
def test_the_ui_warns_for_an_address_other_machines_may_reach(host, loopback):
    assert is_loopback(host) is loopback
    line = exposure_warning(host, 5000)
    assert "\n" not in line and f"{host}:5000" in line and "--app-name basic-auth" in line
