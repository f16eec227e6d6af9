"""data_platform: a Dagster asset-based data platform on DuckDB and dbt."""
