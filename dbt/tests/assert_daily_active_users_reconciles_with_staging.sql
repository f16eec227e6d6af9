{{ config(severity='warn', meta={'dagster': {'ref': {'name': 'daily_active_users'}}}) }}
-- A check of daily_active_users (meta.dagster.ref): the model it reconciles.
-- daily_active_users, day by day, against the same definition computed from staging (first
-- arrival of each event of a known type, distinct users per UTC date of occurred_at), not
-- through fct_events. A wrong date (the arrival dt instead of occurred_at), a lost or
-- doubled user shows here. Warn: like assert_partitioned_facts_match_staging, a fact whose
-- re-ingested days were not rebuilt yet differs from staging too.
-- Returns the days that disagree.

with

daily_active_users as (

    select * from {{ ref('daily_active_users') }}

),

expected as (

    select
        cast(occurred_at as date) as activity_date,
        count(distinct user_id) as active_users

    from {{ ref('stg_events__events') }}
    where is_known_event_type
    group by cast(occurred_at as date)

),

compared as (

    select
        coalesce(daily_active_users.activity_date, expected.activity_date) as activity_date,
        daily_active_users.active_users,
        expected.active_users as expected_active_users

    from daily_active_users
    full outer join expected
        on daily_active_users.activity_date = expected.activity_date

)

select *
from compared
where active_users is distinct from expected_active_users
