-- One row per event_id: its FIRST arrival (earliest dt, then source file, then line).
-- Unknown event types are kept and flagged; fct_events leaves them out.

with

source as (

    select * from {{ source('events', 'events') }}

),

renamed as (

    select
        cast(event_id as {{ dbt.type_string() }}) as event_id,
        cast(user_id as bigint) as user_id,
        cast(event_type as {{ dbt.type_string() }}) as event_type,
        -- ingestion already normalised occurred_at to naive UTC
        cast(occurred_at as timestamp) as occurred_at,
        cast(session_id as {{ dbt.type_string() }}) as session_id,
        cast(properties as {{ json_type() }}) as properties,
        {{ landing_file_lineage_columns() }}

    from source

),

first_arrivals as (

    {{ first_arrival('renamed', 'event_id') }}

),

final as (

    select
        event_id,
        user_id,
        event_type,
        {{ in_var_list('event_type', 'known_event_types') }} as is_known_event_type,
        occurred_at,
        session_id,
        properties,
        rescued_fields,
        dt,
        source_file,
        source_line_number,
        loaded_at,
        arrival_count

    from first_arrivals

)

select * from final
