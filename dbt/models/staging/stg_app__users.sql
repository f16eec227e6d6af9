-- Every distinct version of every user (grain: user_id, updated_at), from the raw version log.
-- The history models need every version; marts pick the latest with is_latest_version.
-- PII (email, full_name) lives here and nowhere downstream: the snapshots already hash it.

with

source as (

    select * from {{ source('app', 'users') }}

),

renamed as (

    select
        cast(id as bigint) as user_id,
        cast(email as {{ dbt.type_string() }}) as email,
        cast(full_name as {{ dbt.type_string() }}) as full_name,
        -- Unicode spaces trimmed, a-z upper-cased, alike on both engines (macros ascii_upper,
        -- trim_spaces).
        {{ ascii_upper(trim_spaces('country')) }} as country,
        -- raw timestamps are naive UTC: keep them naive, they mean UTC
        cast(created_at as timestamp) as created_at,
        cast(updated_at as timestamp) as updated_at,
        cast(deleted_at as timestamp) as deleted_at,
        deleted_at is not null as is_deleted,
        cast(_extracted_at as timestamp) as extracted_at,
        cast(_rescued as {{ json_type() }}) as rescued_fields

    from source

),

final as (

    {{ distinct_versions('renamed', 'user_id') }}

)

select * from final
