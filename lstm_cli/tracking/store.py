"""Which tracking store to use, whether it can be reached, and opening it.

A store is a SQLite file (the default, `outputs/mlflow.db`), another SQL database, or a
tracking server (http(s)://). A new SQLite store is built atomically.
"""

from __future__ import annotations

import base64
import importlib.util
import os
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from lstm_cli.config import files
from lstm_cli.runtime import internals
from lstm_cli.runtime.errors import AccessRefused, UserError, access_code, first_line, needs
from lstm_cli.runtime.masking import mask, split_credentials

STORE_DIR = "outputs"  # beside the user's working directory, as Hydra's outputs
HEALTH_TIMEOUT_S = 3.0
DATABASE_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")  # MLflow's SQL stores
NO_RUNS = "no runs yet: run `lstm-digits train` first"


def default_uri() -> str:
    """The store used when nothing else is said: outputs/mlflow.db in the working directory."""
    return f"sqlite:///{Path.cwd() / STORE_DIR / 'mlflow.db'}"


def resolve_uri(uri: str | None) -> str:
    """The tracking URI to use: the given one, else $MLFLOW_TRACKING_URI, else `default_uri()`."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or default_uri()


def is_server(uri: str) -> bool:
    """Whether `uri` is a tracking server (which serves its own UI)."""
    return uri.startswith(("http://", "https://"))


def ui_command(uri: str, experiment: str, experiment_id: str, run_id: str) -> str:
    """How to look at a run: the server's page, else the `ui` command for this store."""
    if is_server(uri):
        return f"{uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"
    command = "lstm-digits ui" if uri == default_uri() else f"lstm-digits ui --tracking-uri {uri}"
    if experiment != files.default("tracking.experiment"):
        command += f" --experiment {experiment}"
    return command


def sqlite_path(uri: str) -> Path | None:
    """The database file of a SQLite URI; None for other stores."""
    return Path(uri[len("sqlite:///") :]) if uri.startswith("sqlite:///") else None


def artifact_root(uri: str) -> str | None:
    """A new experiment's artifact root: beside a SQLite store; else the server decides."""
    db = sqlite_path(uri)
    return (db.resolve().parent / "mlartifacts").as_uri() if db else None


def probe(url: str, timeout: float = HEALTH_TIMEOUT_S) -> None:
    """Ask an MLflow server at `url` for /health; raise OSError (or ValueError) if it fails.

    Credentials in the URL (http://user:password@host) go in an Authorization header, as
    MLflow's client sends them: urllib would take them for part of the host name.
    """
    bare, user, password = split_credentials(url)
    request = urllib.request.Request(f"{bare.rstrip('/')}/health")
    if user is not None or password is not None:
        token = base64.b64encode(f"{user or ''}:{password or ''}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        if response.status != 200:
            raise OSError(f"/health answered {response.status}")


def healthy(url: str, timeout: float = HEALTH_TIMEOUT_S) -> bool:
    """Whether the MLflow server at `url` answers /health."""
    try:
        probe(url, timeout)
    except (OSError, ValueError):
        return False
    return True


def check_store(uri: str) -> None:
    """Fail within seconds, with a UserError, when the store cannot be reached or written, or
    (a server that checks who asks) does not take the credentials."""
    if is_server(uri):
        try:
            probe(uri)
        except (urllib.error.URLError, OSError, ValueError) as ex:
            reason = getattr(ex, "reason", ex)
            raise UserError(
                f"cannot reach the MLflow tracking server at {mask(uri)}: {reason}"
            ) from None
        _check_credentials(uri)
        return
    scheme = uri.split(":", 1)[0].split("+", 1)[0] if "://" in uri else ""
    if scheme not in DATABASE_SCHEMES:
        raise UserError(
            f"tracking.uri={uri} is not a store MLflow {mlflow.__version__} can use: give "
            "sqlite:///path/to/mlflow.db, a database URL (postgresql://...) or http(s)://server"
        )
    _check_driver(uri)
    db = sqlite_path(uri)
    if db is not None:
        try:
            db.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=db.parent, prefix=".write-test"):
                pass
        except OSError as ex:
            raise UserError(f"cannot write the tracking store {db}: {ex.strerror or ex}") from None


def _check_credentials(uri: str) -> None:
    """An AccessRefused (401) when the server at `uri` does not take the credentials MLflow's
    client sends (its variables, the URI's user, a token): one request that any user may make
    (/health asks for none)."""
    try:
        MlflowClient(uri).search_experiments(max_results=1)
    except MlflowException as ex:
        if access_code(ex) == 401:
            raise AccessRefused(401, uri) from None
        # anything else is told by the request that meets it


# SQLAlchemy 2 names the driver after '+', else its default for the dialect.
DRIVERS = {
    "postgresql": "psycopg",
    "postgresql+psycopg": "psycopg",
    "postgresql+psycopg2": "psycopg2",
    "mysql": "MySQLdb",
    "mysql+pymysql": "pymysql",
}
EXTRAS = {  # what to install for each driver
    "psycopg": "pip install 'lstm-digits[postgres]' (psycopg 3)",
    "psycopg2": "pip install psycopg2-binary",
    "MySQLdb": "pip install mysqlclient",
    "pymysql": "pip install pymysql",
}


def _check_driver(uri: str) -> None:
    """A database URI whose driver is not installed: say which package to install."""
    dialect = uri.split("://", 1)[0]
    module = DRIVERS.get(dialect)
    if module and importlib.util.find_spec(module) is None:
        raise UserError(
            f"tracking.uri={mask(uri)} needs the {module} driver, which is not installed: "
            f"{EXTRAS[module]}"
        )


def create_sqlite_store(db: Path) -> None:
    """Build a new SQLite store beside `db`, then move it into place complete.

    MLflow builds its schema in about 60 migrations (1.2 s here): the first store this MLflow
    version builds is kept as an empty template (`template_path`), and later ones are copies
    of it (10 ms). A store interrupted half-way (Ctrl-C in a first run) cannot be opened
    again: linking the finished file is atomic and never replaces a store another process made
    meanwhile: that one is kept.
    """
    partial = db.with_name(f".{db.name}.{uuid.uuid4().hex}.partial")  # MLflow caches by URI
    try:
        if not internals.copy_store_template(template_path(), partial):
            MlflowClient(f"sqlite:///{partial}")  # builds the schema
            _keep_template(partial)
        try:
            os.link(partial, db)
        except FileExistsError:
            pass
        except OSError:  # a file system without hard links: a rename, unless one is there now
            if not db.exists():
                os.rename(partial, db)
    finally:
        partial.unlink(missing_ok=True)


def template_path() -> Path:
    """The empty store this MLflow version builds, kept in the user's cache directory."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "lstm-digits" / f"mlflow-{mlflow.__version__}-empty.db"


def _keep_template(store: Path) -> None:
    """Keep a copy of the new empty `store` as the template (atomically; best effort)."""
    import shutil

    template = template_path()
    partial = template.with_name(f".{template.name}.{uuid.uuid4().hex}")
    try:
        template.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(store, partial)
        os.replace(partial, template)
    except OSError:
        partial.unlink(missing_ok=True)


def open_experiment(uri: str, name: str, parent: str | None = None) -> str:
    """Point MLflow at `uri`, create the experiment if needed (once, race-safe); return its id.

    A sweep's job (`parent`: its sweep's run) goes into its sweep's experiment whatever `name`
    its point asks for (`-m experiment=debug,keras`): the summary, the pruning rungs and the
    UI's nesting look for a sweep's children there.
    """
    check_store(uri)
    try:
        db = sqlite_path(uri)
        if db is not None and not db.exists():
            create_sqlite_store(db)
        mlflow.set_tracking_uri(uri)
        client = _client(uri)
        if parent:
            return client.get_run(parent).info.experiment_id
        with needs("READ permission on it", lambda: f"read experiment '{name}'", uri):
            experiment = client.get_experiment_by_name(name)
        if experiment is None:
            try:
                creating = f"create experiment '{name}'"
                with needs("permission to create experiments", lambda: creating, uri):
                    return client.create_experiment(name, artifact_location=artifact_root(uri))
            except MlflowException:  # another process created it first
                experiment = client.get_experiment_by_name(name)
                if experiment is None:
                    raise
    except MlflowException as ex:
        raise UserError(f"cannot use the tracking store {mask(uri)}: {first_line(ex)}") from None
    if experiment.lifecycle_stage == "deleted":
        raise UserError(
            f"experiment '{name}' is deleted in {uri}: restore it (mlflow experiments restore "
            f"--experiment-id {experiment.experiment_id}) or set tracking.experiment=<another>"
        )
    return experiment.experiment_id


def reader(uri: str) -> MlflowClient:
    """A client on an existing store; a UserError, rather than a new empty store, if none."""
    db = sqlite_path(uri)
    if db is not None and not db.exists():
        raise UserError(f"{NO_RUNS} (there is no tracking store at {db})")
    if db is None:
        check_store(uri)
    mlflow.set_tracking_uri(uri)
    return _client(uri)


SCHEMA_SETTLED_S = 3.0  # a schema unchanged this long is no longer being built


def _client(uri: str) -> MlflowClient:
    """A client on `uri`; an existing SQLite store whose schema another process is building is
    opened once that process is done.

    MLflow builds a new store's schema in place when it opens one (`mlflow ui`, a script's
    client): a second process opening it meanwhile runs the same migrations again (a table
    built twice, alembic's row gone) and breaks the store for both. We build ours aside
    (`create_sqlite_store`) and wait for theirs to reach MLflow's head revision; a schema that
    stays behind (an older MLflow's store) is left to MLflow, which says what to do.
    """
    db = sqlite_path(uri)
    if db is not None and db.exists():
        head = internals.schema_head()
        seen, since = internals.schema_version(db), time.monotonic()
        while seen != head and time.monotonic() - since < SCHEMA_SETTLED_S:
            time.sleep(0.1)
            if (version := internals.schema_version(db)) != seen:
                seen, since = version, time.monotonic()
    return MlflowClient(uri)
