"""What a Celery run's tags pin (resources/run_pinned.py): where, never a secret."""

from data_platform.code_version import code_digest, loaded_code_version
from data_platform.resources.run_pinned import CODE_TAG, run_pins
from data_platform.settings import load_settings


def test_a_runs_pins_name_each_place_without_its_secret(tmp_path):
    settings = load_settings(
        {
            "DATA_PLATFORM_HOME": str(tmp_path),
            "DATA_PLATFORM_ENGINE": "spark",
            "DATA_PLATFORM_SPARK_REMOTE": "sc://spark.internal:443/;token=t0ken;use_ssl=true",
            "DATA_PLATFORM_SOURCE_DB_URL": "postgresql://app:pw1@db:5432/app?password=pw2",
            "DATA_PLATFORM_LANDING": "s3://bucket/landing",
        }
    )
    assert run_pins(settings) == {
        "data_platform/warehouse": "spark sc://spark.internal:443",
        "data_platform/landing": "s3://bucket/landing",
        "data_platform/source_database": "postgresql://app:***@db:5432/app?password=***",
        CODE_TAG: loaded_code_version(),
    }
    local = run_pins(load_settings({"DATA_PLATFORM_HOME": str(tmp_path)}))
    assert local["data_platform/warehouse"] == f"duckdb {tmp_path.resolve()}/warehouse.duckdb"
    assert local["data_platform/landing"] == str((tmp_path / "landing").resolve())


def test_the_code_version_changes_with_the_code_and_only_with_it(tmp_path):
    """A worker compares it with its run's (services/celery_app.py): what dbt builds, Python
    caches and dbt's logs are no code; a model or a module is."""
    package, dbt = tmp_path / "data_platform", tmp_path / "dbt"
    for path, text in [
        (package / "__init__.py", ""),
        (package / "assets" / "raw.py", "RAW = 1\n"),
        (dbt / "dbt_project.yml", "name: p\n"),
        (dbt / "models" / "marts" / "fct.sql", "select 1\n"),
    ]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    first = code_digest(package, dbt)
    for built in [
        package / "__pycache__" / "raw.cpython-311.pyc",
        dbt / "target" / "manifest.json",
        dbt / "logs" / "dbt.log",
        dbt / ".user.yml",
    ]:
        built.parent.mkdir(parents=True, exist_ok=True)
        built.write_text("built")
    assert code_digest(package, dbt) == first
    (dbt / "models" / "marts" / "fct.sql").write_text("select 2\n")
    second = code_digest(package, dbt)
    (package / "assets" / "raw.py").write_text("RAW = 2\n")
    third = code_digest(package, dbt)
    # A file moved is another version, its content the same.
    (package / "assets" / "raw.py").rename(package / "raw.py")
    assert len({first, second, third, code_digest(package, dbt)}) == 4
