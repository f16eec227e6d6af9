{{ config(meta={'dagster': {'ref': {'name': 'daily_active_users'}}}) }}
-- A check of daily_active_users (meta.dagster.ref), the mart built last: it judges every mart
-- and runs once they are all built, in the last dbt step of every run that reaches the marts
-- (a check of a model built earlier would run before the marts after it, or not at all in a
-- run of part of its step). Blocking (severity error): a failure fails that step.
-- No e-mail address or full name in clear in marts or analytics (dbt/README.md, "PII"): no
-- column may be named like one, except the salted email_hash; and the free-form document of
-- fct_events (properties) must hold nothing like an e-mail address, in a key or a value, at
-- any depth.
-- Returns the offending columns. Analytics' tables are Python assets built on the marts: their
-- columns as the last build left them (none before the first).
-- The refs make the test run after the marts it inspects:
-- depends_on: {{ ref('dim_customers') }}
-- depends_on: {{ ref('customer_lifetime_value') }}
-- depends_on: {{ ref('fct_orders') }}
-- depends_on: {{ ref('fct_events') }}
-- depends_on: {{ ref('fct_payments') }}
-- depends_on: {{ ref('daily_active_users') }}

with

published_columns as (

    {{ schema_columns('marts') }}
    union all
    {{ schema_columns('analytics') }}

),

named_like_pii as (

    select
        table_name,
        column_name

    from published_columns
    where (lower(column_name) like '%email%' and lower(column_name) <> 'email_hash')
       or lower(column_name) like '%full_name%'
       or lower(column_name) in ('name', 'first_name', 'last_name')

),

holding_emails as (

    select distinct
        'fct_events' as table_name,
        'properties' as column_name

    from {{ ref('fct_events') }}
    where {{ regexp_contains('cast(properties as ' ~ dbt.type_string() ~ ')', email_pattern(in_json=true)) }}

)

select * from named_like_pii
union all
select * from holding_emails
