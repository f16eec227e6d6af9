-- Deduplicated events of known types (one row per event_id, at its first arrival's dt).
-- Incremental per arrival day: see macros/partition_window.sql and the dt_partition strategy
-- (macros/incremental/). On Spark the table is partitioned by dt (a folder a day), which the
-- strategy rewrites a partition at a time; dbt-duckdb ignores partition_by on a table.
-- An incremental run also selects the window's events of unknown types, which the strategy
-- inserts nowhere (meta.insert_condition) but whose event_id it takes out of every other
-- partition: an event kept at a later dt leaves when its first arrival, now at an earlier dt,
-- turns out to be of an unknown type.

{{
    config(
        materialized='incremental',
        incremental_strategy='dt_partition',
        unique_key='event_id',
        on_schema_change='append_new_columns',
        meta={
            'partition_column': 'dt',
            'insert_condition': in_var_list('event_type', 'known_event_types'),
        },
        partition_by=['dt'],
        tags=['partitioned'],
        post_hook="{{ refresh_orphan_flag('is_orphan_user', 'user_id', ref('dim_customers'), 'user_id') }}",
    )
}}

with

events as (

    select * from {{ ref('stg_events__events') }}
    where {{ partition_window_rows('event_id') }}
    {%- if not is_incremental() %}
      and is_known_event_type
    {%- endif %}

),

customers as (

    select distinct user_id from {{ ref('dim_customers') }}

),

final as (

    select
        cast(events.event_id as {{ dbt.type_string() }}) as event_id,
        cast(events.user_id as bigint) as user_id,
        cast(events.event_type as {{ dbt.type_string() }}) as event_type,
        cast(events.occurred_at as timestamp) as occurred_at,
        cast(events.occurred_at as date) as occurred_date,
        cast(events.session_id as {{ dbt.type_string() }}) as session_id,
        -- Only the allowed keys: free-form JSON may carry personal data (macro's docs).
        cast({{ published_event_properties('events.properties') }} as {{ json_type() }}) as properties,
        cast(customers.user_id is null as boolean) as is_orphan_user,
        cast(events.dt as date) as dt,
        cast(events.source_file as {{ dbt.type_string() }}) as source_file,
        cast(events.source_line_number as bigint) as source_line_number,
        cast(events.loaded_at as timestamp) as loaded_at

    from events
    left join customers
        on events.user_id = customers.user_id

)

select * from final
