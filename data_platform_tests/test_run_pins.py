"""What a Celery run's tags pin (resources/run_pinned.py): where, never a secret."""

from data_platform.resources.run_pinned import run_pins
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
    }
    local = run_pins(load_settings({"DATA_PLATFORM_HOME": str(tmp_path)}))
    assert local["data_platform/warehouse"] == f"duckdb {tmp_path.resolve()}/warehouse.duckdb"
    assert local["data_platform/landing"] == str((tmp_path / "landing").resolve())
