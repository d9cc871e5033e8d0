"""The model registry: registering a run's model, aliases, and models:/ references.

A reference is models:/NAME/VERSION or models:/NAME@ALIAS. Every mistake (an unknown name,
alias or version, a store without a registry) is a UserError of one line.
"""

from __future__ import annotations

import contextlib
import io
import re
from dataclasses import dataclass

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from lstm_cli.runtime.errors import AccessRefused, UserError, access_code, first_line

PREFIX = "models:/"
REFERENCE = re.compile(r"models:/(?P<name>[^/@]+)(?:/(?P<version>\d+)|@(?P<alias>[^/@]+))")
# What MLflow's client raises when the store has no registry (a server that answers 404).
NO_REGISTRY = ("ENDPOINT_NOT_FOUND", "FEATURE_DISABLED", "NOT_IMPLEMENTED")


@dataclass(frozen=True)
class Version:
    """One registered model version, as plain values."""

    name: str
    version: str
    run_id: str | None  # the run that logged it (None: registered from elsewhere)

    @property
    def uri(self) -> str:
        return f"{PREFIX}{self.name}/{self.version}"


def is_reference(ref: str) -> bool:
    return ref.strip().startswith(PREFIX)


def _fail(ex: MlflowException, uri: str, what: str, change: str = "") -> UserError:
    """`ex` from the registry as a UserError that says what was asked for (`change`: the
    change of a model it made, which needs EDIT permission on the model)."""
    code = access_code(ex)
    if code == 403 and change:
        return AccessRefused(code, uri, change, "EDIT permission on the model")
    if code is not None:
        return AccessRefused(code, uri)
    if ex.error_code in NO_REGISTRY:
        return UserError(f"the tracking store {uri} has no model registry: use run ids there")
    return UserError(f"{what}: {first_line(ex)}")


def _missing(client: MlflowClient, uri: str, name: str, version: str | None, alias: str | None):
    """What is missing of models:/NAME/VERSION or models:/NAME@ALIAS, and what there is."""
    try:
        model = client.get_registered_model(name)
    except MlflowException as ex:
        if ex.error_code != "RESOURCE_DOES_NOT_EXIST":
            return _fail(ex, uri, f"cannot read model '{name}'")
        return UserError(
            f"no registered model '{name}' in {uri}: "
            f"`lstm-digits register RUN {name}` registers one"
        )
    if alias:
        known = ", ".join(f"@{a}" for a in sorted(model.aliases)) or "none"
        return UserError(
            f"model '{name}' has no alias @{alias} (its aliases: {known}); "
            f"`lstm-digits register RUN {name} --alias {alias}` sets it"
        )
    versions = sorted(int(v.version) for v in client.search_model_versions(f"name = '{name}'"))
    return UserError(
        f"model '{name}' has no version {version} (its versions: "
        f"{', '.join(map(str, versions)) or 'none'})"
    )


def resolve(uri: str, ref: str) -> Version:
    """The version `ref` (models:/NAME/VERSION or models:/NAME@ALIAS) names in the store."""
    ref = ref.strip()
    match = REFERENCE.fullmatch(ref)
    if match is None:
        raise UserError(
            f"'{ref}' is not a model reference: give models:/NAME/VERSION or models:/NAME@ALIAS"
        )
    client = MlflowClient(uri)
    name, version, alias = match["name"], match["version"], match["alias"]
    try:
        found = (
            client.get_model_version(name, version)
            if version
            else client.get_model_version_by_alias(name, alias)
        )
    except MlflowException as ex:
        if ex.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise _fail(ex, uri, f"cannot find {ref}") from None
        raise _missing(client, uri, name, version, alias) from None
    return Version(found.name, str(found.version), found.run_id)


def register(run_id: str, name: str, alias: str | None = None) -> Version:
    """Register the model `run_id` logged (in the current store) as a new version of `name`
    (created if needed), and point `alias` at it if given."""
    uri = mlflow.get_tracking_uri()
    client = MlflowClient(uri)
    what = f"cannot register run {run_id} as '{name}'"
    try:
        models = client.get_run(run_id).outputs.model_outputs
        if not models:
            raise UserError(
                f"{what}: the run has no logged model (tracking.log_model=false, "
                "or it stopped before the end)"
            )
        # The logged model itself (models:/<model id>): MLflow 3 keeps it apart from the run's
        # artifacts, and runs:/<id>/model would only be redirected there with a warning.
        with contextlib.redirect_stderr(io.StringIO()):  # MLflow's progress lines: ours instead
            found = mlflow.register_model(f"{PREFIX}{models[-1].model_id}", name)
    except MlflowException as ex:
        raise _fail(ex, uri, what, f"register a new version of model '{name}'") from None
    version = Version(found.name, str(found.version), run_id)
    if alias:
        try:
            client.set_registered_model_alias(name, alias, version.version)
        except MlflowException as ex:
            what = f"registered {version.uri}, but cannot point @{alias} at it"
            refused = _fail(ex, uri, what, f"point model '{name}'s alias @{alias}")
            if isinstance(refused, AccessRefused):  # the new version stays: say so
                raise UserError(f"registered {version.uri}, but {refused}") from None
            raise refused from None
    return version
