"""The servers of distributed mode (PostgreSQL, Redis, Celery workers; Kafka and Spark when named),
started as user processes.

One mechanism for every service: each module implements `Service` (start, stop, is_up, env),
and `python -m data_platform.services up|down|env` drives them, for `make services-up` and for
the test fixtures alike. A new service joins by adding a module to `registry`.
"""
