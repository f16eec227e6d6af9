"""Declarative automation: when each asset downstream of raw is rebuilt, decided per kind.

The raw layer is driven by sensors (files landing, source rows changing), which bound how often
anything changes: six event files and two payment exports a day, database batches. So every
table below raw follows its inputs eagerly (within a minute or two, which the live demo needs)
instead of waiting for a daily cron, at a cost of a handful of rebuilds a day.

Three guarantees hold for every condition here, because Dagster gives none of them by itself
(its issue #17332: automation ignores blocking checks):
- nothing is requested while an input is being built or is about to be (it waits for the
  input's run, and with it the input's blocking checks);
- nothing is requested while an input has a failed blocking check (or one that raised instead
  of judging the input's update: it waits for a verdict, a retry's), and the pending updates
  the failure may be about (those no evaluation saw passing) are dropped, not replayed after a
  later run passes (a check of a partitioned asset may judge only the run's partitions): after
  an alert, the fix re-delivers. Updates already seen passing (another day's) wait instead;
- staging views are virtual (they hold no data), so every gate also looks through them to the
  tables they read. Tables only read their direct inputs or views over raw, so holding the
  direct children of a failed check (and the children through views) keeps bad data out of
  every table further down: nothing downstream ever sees an update from the failed asset.
The scorecard, which reports on the checks, is held only by those of the tables it reads
(`reports_on_inputs`).
"""

from collections.abc import Mapping
from typing import Any

import dagster as dg

AC = dg.AutomationCondition

# dim_date, the only model without inputs, extends its calendar once a day.
DAILY_CRON = "0 0 * * *"
# The tag of every run the automation sensor launches.
AUTOMATION_TAG = "dagster/from_automation_condition"


def _through_views(condition: dg.AutomationCondition, *, any_dep: bool) -> dg.AutomationCondition:
    """`condition` over the direct inputs, and over the tables behind any staging view."""
    match = AC.any_deps_match if any_dep else AC.all_deps_match
    direct, behind_views = match(condition), match(condition).resolve_through_virtual()
    return (direct | behind_views) if any_dep else (direct & behind_views)


def _checks(
    condition: dg.AutomationCondition,
    ignoring: dg.AssetSelection | None,
    *,
    every: bool = False,
) -> dg.AutomationCondition:
    """Whether any (`every`: all) blocking check meets `condition`, other than the checks
    `ignoring` selects."""
    match = AC.all_checks_match if every else AC.any_checks_match
    matched = match(condition, blocking_only=True)
    return matched if ignoring is None else matched.ignore(ignoring)


def _skipped() -> dg.AutomationCondition:
    """A check whose run ended without it and without failing (a run canceled): Dagster's
    SKIPPED, which no condition names, so what is left once every other state is ruled out."""
    other = AC.run_in_progress() | AC.check_passed() | AC.check_failed() | AC.execution_failed()
    return ~(other | AC.missing())


def _blocking_check_failed(
    ignoring: dg.AssetSelection | None = None, *, errored: bool = True
) -> dg.AutomationCondition:
    """The asset (partition) has a blocking check that failed, or (`errored`) that did not judge
    what its run wrote: it raised (its run failed; Dagster's check_failed() is only a verdict),
    or its run was canceled after the write (skipped): data no check passed. A check that did
    not run because the asset's own step failed, or its run was canceled before the write, is
    not one: nothing was written, and what is stored was judged before (no update since every
    blocking check last passed)."""
    failed = _checks(AC.check_failed(), ignoring)
    if not errored:
        return failed
    raised = _checks(AC.execution_failed(), ignoring)
    judged = _checks(AC.check_passed(), ignoring, every=True)
    canceled = _checks(_skipped(), ignoring)
    unjudged_update = AC.newly_updated().since(judged)
    return failed | (raised & ~AC.execution_failed()) | (canceled & unjudged_update)


def upstream_check_failed(
    ignoring: dg.AssetSelection | None = None, *, errored: bool = True
) -> dg.AutomationCondition:
    """An input's blocking check failed, other than the checks `ignoring` selects; with
    `errored`, also one that raised instead of judging its run's update. Such an update waits
    for a verdict (a crashed run's retry re-runs the checks alone, writing nothing new), so a
    check that raised holds and never drops: only a verdict of failure does."""
    failed = _blocking_check_failed(ignoring, errored=errored)
    label = "an input's blocking check " + (
        "failed, raised or was canceled" if errored else "failed"
    )
    return _through_views(failed, any_dep=True).with_label(label)


def raw_side_check_failed() -> dg.AutomationCondition:
    """A blocking check failed on a staging view or on the raw table behind one: the side a
    partitioned fact's days come from, which a failure there may be about."""
    failed = AC.any_deps_match(_blocking_check_failed(errored=False))
    on_views = failed.allow(dg.AssetSelection.kind("view"))
    on_raw = failed.resolve_through_virtual().allow(dg.AssetSelection.key_prefixes(["raw"]))
    return (on_views | on_raw).with_label("a raw input's blocking check failed")


def upstream_running() -> dg.AutomationCondition:
    """An input (or a table behind a view) or its blocking checks are in a run.

    An input is stored before the checks of its run have judged it, so until its run ends the
    verdict shown is not yet about the update.
    """
    checks_running = AC.any_checks_match(AC.run_in_progress(), blocking_only=True)
    in_a_run = _through_views(AC.in_progress() | checks_running, any_dep=True)
    return in_a_run.with_label("an input is in a run")


def upstream_busy() -> dg.AutomationCondition:
    """An input is in a run (see upstream_running), or a view has not caught up yet.

    A view is rebuilt (and its blocking checks run) after its tables change. An asset that
    looks through the view is triggered by the same change, so it waits for the view's run:
    will_be_requested() cannot say so, as it only sees requests that could share its run.
    """
    view_behind = AC.any_deps_match(AC.any_deps_updated().since(AC.newly_updated()))
    view_behind = view_behind.allow(dg.AssetSelection.kind("view"))
    return (upstream_running() | view_behind).with_label("an input is being built")


def upstream_pending() -> dg.AutomationCondition:
    """The wave of updates has not reached the inputs yet: an input will be requested in this
    tick, or an input's own input is in a run, will be requested or updated in this tick.

    any_deps_updated() counts an input requested in the same tick as updated, and that request
    handles nothing (see _handled): each layer of one delivery rebuilt everything below it
    again, an aggregate once per layer above it. Waiting for the layer two up lets the asset be
    requested once, the tick after its last input is built. An update two levels up counts too,
    as will_be_requested() cannot see a partitioned input's request from an unpartitioned asset.
    Every signal lasts a tick or a run: nothing here holds an update for good.
    """
    coming = AC.in_progress() | AC.will_be_requested() | AC.newly_updated()
    input_requested = _through_views(AC.will_be_requested(), any_dep=True)
    inputs_input_coming = _through_views(AC.any_deps_match(coming), any_dep=True)
    return (input_requested | inputs_input_coming).with_label("an input is about to be rebuilt")


def upstream_wave_pending() -> dg.AutomationCondition:
    """upstream_pending as a partitioned asset can tell it of its unpartitioned inputs: also an
    input's input's input, or the one above, in a run or updated in this tick.

    will_be_requested() never sees an unpartitioned asset's request from a partitioned one (no
    run can hold both), so a request is told by what triggers it, the update of the requested
    asset's own input in the same tick, one level further up; then by its run. Four levels
    cover the longest chain above a table a fact joins: fct_orders, dim_customers,
    users_history, stg_app__users. Every signal lasts a tick or a run, as upstream_pending's.
    """
    coming = AC.in_progress() | AC.newly_updated()
    above = AC.any_deps_match(coming)
    for _ in range(2):  # from the fourth level up to the third, then the second
        above = AC.any_deps_match(coming | above)
    input_above_coming = _through_views(above, any_dep=True)
    return (upstream_pending() | input_above_coming).with_label("a wave has not reached the inputs")


def upstream_present() -> dg.AutomationCondition:
    # For a partitioned input of an unpartitioned asset: at least one partition exists.
    return _through_views(~AC.missing(), any_dep=False).with_label("every input exists")


def _handled() -> dg.AutomationCondition:
    """The asset's own request (unless an input was requested in the same tick), or its update
    by a run automation did not launch.

    Not the update of a run automation launched: a run reads its inputs when it starts, so an
    input update landing while it runs would be cleared by the run's own update (when both are
    seen in one evaluation the reset wins). Its request handles the trigger instead, a tick
    later; an input requested in the same tick may land after the run read it, so that request
    handles nothing: the trigger stays and the asset is rebuilt once the input's run is over.
    The cost is an occasional redundant rebuild.

    A run launched by hand (a `data-platform materialize` backfill, "Materialize all", a
    re-execution) is never requested, so its update handles the trigger: the inputs it updated
    with the asset are not rebuilt again. Dagster tells only the latest partition's run, so an
    older partition's update counts as such a run's (an input landing while an automation run
    of several partitions runs may then be missed for the older ones). Unlike
    since_last_handled(), the first evaluation is no reset: what is missing when the platform
    starts gets built once its inputs exist, so an empty warehouse fills itself.
    """
    inputs_requested = _through_views(AC.newly_requested(), any_dep=True)
    by_automation = AC.executed_with_tags(tag_values={AUTOMATION_TAG: "true"})
    by_hand = AC.newly_updated() & ~by_automation
    return ((AC.newly_requested() & ~inputs_requested) | by_hand).with_label("handled")


def _unjudged(
    trigger: dg.AutomationCondition, ignoring: dg.AssetSelection | None = None
) -> dg.AutomationCondition:
    """Triggered by an update whose blocking checks have not been seen passing yet.

    An update is judged at the first evaluation where no input is in a run and no check fails:
    from then on a failure (of another day, say) is not about it. Per partition, so a failed
    day does not take with it the good days still waiting for a view to catch up.
    """
    judged = ~upstream_check_failed(ignoring) & ~upstream_running()
    return trigger.since(judged).with_label("not judged yet")


def _gated(
    trigger: dg.AutomationCondition,
    name: str,
    dropping: dg.AutomationCondition | None = None,
    ignoring: dg.AssetSelection | None = None,
    waiting: dg.AutomationCondition | None = None,
) -> dg.AutomationCondition:
    """Request once per trigger, when every input exists, none is busy and no check failed
    (none but the checks `ignoring` selects).

    A failed check (of `dropping`'s, by default any input's) drops the pending updates it may
    be about (those not judged yet): they are not replayed when a later run passes, as a check
    of a partitioned asset may judge only its run's partitions. Updates judged before the
    failure, and those a failure elsewhere cannot be about, wait for the check to pass again.
    """
    failed = upstream_check_failed(ignoring, errored=False) if dropping is None else dropping
    dropped = (failed & _unjudged(trigger, ignoring)).with_label("dropped by a failure")
    busy = upstream_busy() if waiting is None else upstream_busy() | waiting
    return (
        trigger.since(_handled() | dropped)
        & upstream_present()
        & ~busy
        & ~upstream_check_failed(ignoring)
        & ~AC.in_progress()
    ).with_label(name)


def follows_inputs(ignoring: dg.AssetSelection | None = None) -> dg.AutomationCondition:
    """Tables and views rebuilt whole: after any input updates, or once when missing.

    `ignoring`: checks of inputs that hold nothing back. For an unpartitioned reader of a
    partitioned input, a check partitioned by day is failed as long as any one day is, which
    may be for good (a day nobody lands again). A reader of the input's data waits, on purpose:
    daily_active_users reads every day of fct_events, and built while a day fails the fact's
    gate it would publish that day's wrong numbers (a later good day, whose run passes, does
    not release it; the failed day, rebuilt and passing, does, and its update rebuilds the
    reader). A reader that reports on the checks themselves (the scorecard) would never
    refresh: it ignores them.
    """
    trigger = AC.any_deps_updated() | AC.missing().newly_true()
    return _gated(trigger, "follows its inputs", ignoring=ignoring, waiting=upstream_pending())


def reports_on_inputs(
    reads: dg.AssetSelection, ignoring: dg.AssetSelection | None = None
) -> dg.AutomationCondition:
    """A report on its inputs' checks (the scorecard): rebuilt once after a wave of updates has
    gone through every layer, not once per layer.

    Its inputs are the assets of every layer whose checks it reports. One delivery rebuilds
    them layer by layer (raw, the view, the facts, the aggregates), each layer requested in
    the tick that sees the layer before it updated. So it waits for a tick in which none of its
    inputs updated or will be requested and none, nor any of their checks (not only the
    blocking ones: it reports them all), is in a run: the wave is over, one tick (5 s) after
    its last layer. will_be_requested() alone would miss the facts, partitioned, which it
    cannot see from an unpartitioned asset; their inputs' update the tick before does not.

    Only the blocking checks of the tables it reads rows of (`reads`), other than those
    `ignoring` selects, hold it, and it needs only those tables to exist: the other inputs'
    checks are what it reports, a failure there is what it is for, and a mart never built
    (its first build failed a gate) is no reason not to say so. A held update is not dropped:
    the report carries no data downstream, so it is made once the check passes again.
    """
    trigger = AC.any_deps_updated() | AC.missing().newly_true()
    checks_running = AC.any_checks_match(AC.run_in_progress())
    running = _through_views(AC.in_progress() | checks_running, any_dep=True)
    read_check_failed = AC.any_deps_match(_blocking_check_failed(ignoring)).allow(reads)
    return (
        trigger.since(_handled())
        & AC.all_deps_match(~AC.missing()).allow(reads)
        & ~AC.any_deps_updated()
        & ~running
        & ~read_check_failed
        & ~AC.in_progress()
    ).with_label("after its inputs settle")


def follows_raw_partitions() -> dg.AutomationCondition:
    """Partitioned facts: a partition is rebuilt when its raw partition lands, whatever its age.

    The raw partition is seen through the staging view (partition to partition), so a late file
    for an old day rebuilds that day, not all of them; eager() would only see the latest day.
    Other inputs (dimensions) are unpartitioned tables: their updates rebuild the latest day only
    (the facts' post-hook then refreshes the orphan flags of every day). Only a failure on the
    raw side drops the days landed meanwhile: a dimension's failing check held them and then
    dropped them too, and once the dimension passed again, nothing re-delivered those days (the
    alert named the dimension): holes in the fact for good. They wait for the dimension now.

    The latest day also waits while a wave of updates has not reached those other inputs yet
    (upstream_wave_pending): today's files and a change of the app tables in one delivery built
    today's fct_events the tick after its view and again once dim_customers was rebuilt
    (fct_payments: after fct_orders). Only the latest day, as only it is rebuilt by them: an
    older day goes the tick after its view, whatever the tables it joins are doing.
    """
    raw_landed = AC.any_deps_match(AC.newly_updated()).resolve_through_virtual()
    raw_landed = raw_landed.allow(dg.AssetSelection.key_prefixes(["raw"]))
    dims_updated = AC.any_deps_match(AC.newly_updated()).ignore(dg.AssetSelection.kind("view"))
    latest_inputs = AC.in_latest_time_window() & dims_updated
    return _gated(
        raw_landed | latest_inputs | AC.missing().newly_true(),
        "follows raw partitions",
        dropping=raw_side_check_failed(),
        waiting=AC.in_latest_time_window() & upstream_wave_pending(),
    )


def daily() -> dg.AutomationCondition:
    """An asset with no inputs: built once when missing, then once a day."""
    return _gated(AC.cron_tick_passed(DAILY_CRON) | AC.missing().newly_true(), "daily")


def dbt_model_condition(dbt_resource_props: Mapping[str, Any]) -> dg.AutomationCondition:
    """The condition of one dbt model, chosen from what dbt knows about it."""
    if "partitioned" in dbt_resource_props.get("tags", []):
        return follows_raw_partitions()
    if not dbt_resource_props.get("depends_on", {}).get("nodes"):
        return daily()
    return follows_inputs()
