"""Runs created to be executed in-process, whose creator died before starting them.

`data-platform materialize` creates its run, builds the plan, then starts it: killed in between
(seconds, 25 on a loaded machine), it leaves the run NOT_STARTED for good, and Dagster's
automation reads that run's partitions as in progress, never to request them again. Under
`dagster dev` the monitoring daemon looks at started runs only, so this sensor ends such runs;
a headless `materialize` ends them itself before it starts (`release_dead_runs`).
"""

import dagster as dg

from data_platform.orchestration.run_health import release_never_started_runs


@dg.sensor(
    name="never_started_runs",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Fails the runs of this host that `data-platform materialize` created and never "
        "started, its process gone: their partitions otherwise stay in progress for good."
    ),
)
def never_started_runs_sensor(context: dg.SensorEvaluationContext) -> dg.SkipReason:
    ended = release_never_started_runs(context.instance)
    for message in ended:
        context.log.warning(message)
    return dg.SkipReason(" ".join(ended) or "no run left unstarted by a process now gone")
