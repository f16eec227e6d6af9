{{ config(severity='warn') }}
-- Every dt present in a partitioned fact holds exactly the rows staging has for it (known
-- event types for fct_events). A difference means a partition is stale: raw was re-ingested
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

    select 'fct_events' as model_name, f.dt, f.actual_rows, coalesce(s.expected_rows, 0) as expected_rows
    from fct_events_rows as f
    left join stg_events_rows as s on f.dt = s.dt

    union all

    select 'fct_payments' as model_name, f.dt, f.actual_rows, coalesce(s.expected_rows, 0) as expected_rows
    from fct_payments_rows as f
    left join stg_payments_rows as s on f.dt = s.dt

)

select *
from compared
where actual_rows <> expected_rows
