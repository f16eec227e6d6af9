"""The dbt project, in its own module so `dagster-dbt project prepare-and-package` can build the
manifest at install time: loading the Definitions never runs dbt."""

from pathlib import Path

from dagster_dbt import DbtProject

DBT_PROJECT_DIR = Path(__file__).resolve().parents[2] / "dbt"

DBT_PROJECT = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)
