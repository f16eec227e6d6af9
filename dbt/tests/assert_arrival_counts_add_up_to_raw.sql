{{ config(meta={'dagster': {'ref': {'name': 'stg_events__events'}}}) }}
-- A check of stg_events__events (meta.dagster.ref; it judges stg_payments__payments too):
-- the deduplicating staging views it guards, run with them in the facts' step.
-- The staging models over landing files keep one row per key with how many times it arrived:
-- their arrival_count must add up to the rows of raw, source by source. A record lost or
-- counted twice by the deduplication shows here. Returns the sources that disagree.

with

staged as (

    select 'events' as source_name, sum(arrival_count) as arrivals
    from {{ ref('stg_events__events') }}

    union all

    select 'payments' as source_name, sum(arrival_count) as arrivals
    from {{ ref('stg_payments__payments') }}

),

landed as (

    select 'events' as source_name, count(*) as arrivals
    from {{ source('events', 'events') }}

    union all

    select 'payments' as source_name, count(*) as arrivals
    from {{ source('payments', 'payments') }}

),

compared as (

    select
        landed.source_name,
        landed.arrivals as raw_rows,
        coalesce(staged.arrivals, 0) as staged_arrivals

    from landed
    left join staged
        on landed.source_name = staged.source_name

)

select *
from compared
where raw_rows <> staged_arrivals
