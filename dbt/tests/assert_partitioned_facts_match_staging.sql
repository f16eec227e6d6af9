{{ config(severity='warn', meta={'dagster': {'ref': {'name': 'fct_events'}}}) }}
-- A check of fct_events (meta.dagster.ref; it judges fct_payments too): run with the facts
-- whose staleness it reports.
-- Every dt of a partitioned fact or of its staging model holds exactly the rows staging has
-- for it (known event types for fct_events). A difference means a partition is stale: raw was re-ingested
-- (e.g. a late file in an old dt folder) and that dt has not been rebuilt yet.
-- Returns (model, dt, rows in the fact, rows expected).

with

fct_events_rows as (

    select dt, count(*) as actual_rows
    from {{ ref('fct_events') }}
    group by dt

),

stg_events_rows as (

    select dt, count(*) as expected_rows
    from {{ ref('stg_events__events') }}
    where is_known_event_type
    group by dt

),

fct_payments_rows as (

    select dt, count(*) as actual_rows
    from {{ ref('fct_payments') }}
    group by dt

),

stg_payments_rows as (

    select dt, count(*) as expected_rows
    from {{ ref('stg_payments__payments') }}
    group by dt

),

compared as (

    -- Full outer joins: a dt staging has and the fact lacks (a day never built, or emptied)
    -- is as stale as one the fact holds with other rows.
    select
        'fct_events' as model_name,
        coalesce(f.dt, s.dt) as dt,
        coalesce(f.actual_rows, 0) as actual_rows,
        coalesce(s.expected_rows, 0) as expected_rows
    from fct_events_rows as f
    full outer join stg_events_rows as s on f.dt = s.dt

    union all

    select
        'fct_payments' as model_name,
        coalesce(f.dt, s.dt) as dt,
        coalesce(f.actual_rows, 0) as actual_rows,
        coalesce(s.expected_rows, 0) as expected_rows
    from fct_payments_rows as f
    full outer join stg_payments_rows as s on f.dt = s.dt

)

select *
from compared
where actual_rows <> expected_rows
