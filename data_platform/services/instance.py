"""The Dagster instance of distributed mode: the repo's dagster.yaml plus PostgreSQL storage.

Generated at every `services-up`, never kept by hand: the run monitoring, run retries, run
launcher and concurrency pools stay exactly those of embedded mode, whatever dagster.yaml says
next. Connection settings are `env:` references, so no host or password is written into it.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from data_platform.services.config import ServicesConfig
from data_platform.services.process import write_atomically

REPO_INSTANCE_YAML = Path(__file__).resolve().parents[2] / "dagster.yaml"

# How long a connection to the instance's PostgreSQL may take to open. libpq's default waits
# for ever: a server that accepts connections but does not answer (stopped, its disk hung)
# held every Dagster process and each metrics scrape, which Prometheus then cut off at its
# 10 s timeout, the whole target lost instead of `data_platform_instance_up 0`.
CONNECT_TIMEOUT_SECONDS = 5

STORAGE = {
    "postgres": {
        "postgres_db": {
            "hostname": {"env": "DAGSTER_PG_HOST"},
            "port": {"env": "DAGSTER_PG_PORT"},
            "username": {"env": "DAGSTER_PG_USER"},
            "password": {"env": "DAGSTER_PG_PASSWORD"},
            "db_name": {"env": "DAGSTER_PG_DB"},
            # psycopg2 (a dagster-postgres dependency) explicitly: SQLAlchemy 2.1 would pick
            # psycopg 3 for a bare postgresql:// scheme, which dagster-postgres is not tested on.
            "scheme": "postgresql+psycopg2",
            # Dagster stamps runs and check executions with the server's CURRENT_TIMESTAMP in
            # a column without a zone, and reads it back as UTC: a server in another zone made
            # a live run hours old (failed by the never-started sweep, its queue age an alert)
            # or younger than it was. The session is UTC, whatever the server's default.
            "params": {"options": "-c timezone=UTC", "connect_timeout": CONNECT_TIMEOUT_SECONDS},
        }
    }
}


def instance_home(config: ServicesConfig) -> Path:
    return config.state_dir("dagster_home")


def write_instance_yaml(config: ServicesConfig, template: Path = REPO_INSTANCE_YAML) -> Path:
    """Write $DATA_PLATFORM_HOME/services/dagster_home/dagster.yaml; return its path."""
    settings = yaml.safe_load(template.read_text()) or {}
    settings["storage"] = STORAGE
    home = instance_home(config)
    home.mkdir(parents=True, exist_ok=True)
    path = home / "dagster.yaml"
    header = f"# Generated from {template} by `make services-up`: edit that file, not this one.\n"
    # Whole or not at all: cut short by a kill, every Dagster process of the home failed to load it.
    write_atomically(path, header + yaml.safe_dump(settings, sort_keys=False), 0o644)
    return path
