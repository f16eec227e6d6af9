"""The event stream: Kafka topic `events` -> landing files, exactly once (`data-platform consume`).

`sink.py` explains the guarantees; `batch.py` what a landing file holds; `lag.py` and
`assets.py` how the UI and Prometheus see the consumer keeping up.
"""
