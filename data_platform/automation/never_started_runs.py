"""Runs that will never start, whoever was to start them gone.

`data-platform materialize` creates its run, builds the plan, then starts it: killed in between
(seconds, 25 on a loaded machine), it leaves the run NOT_STARTED. The daemon launches a queued
run by asking a code server to start its process: `dagster dev` killed in between leaves it
STARTING. Dagster's monitoring daemon fails either only at its start timeout (180 s), while the
automation reads the run's days as in progress and the queue holds every run of the `duckdb`
pool behind it. This sensor fails them within a tick once their starter is gone; a headless
`materialize` does the same before it starts (`release_dead_runs`).
"""

import dagster as dg

from data_platform.orchestration.run_health import release_never_started_runs


@dg.sensor(
    name="never_started_runs",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Fails the runs that will never start: created by a `data-platform materialize` of this "
        "host that is gone, or launched on a code server that no longer answers. Dagster's "
        "monitor waits 180 s for them, holding the duckdb pool's queue."
    ),
)
def never_started_runs_sensor(context: dg.SensorEvaluationContext) -> dg.SkipReason:
    ended = release_never_started_runs(context.instance)
    for message in ended:
        context.log.warning(message)
    return dg.SkipReason(" ".join(ended) or "no run left unstarted by a starter now gone")
