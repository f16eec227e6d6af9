-- Every distinct version of every order (grain: order_id, updated_at).

with

source as (

    select * from {{ source('app', 'orders') }}

),

renamed as (

    select
        cast(id as bigint) as order_id,
        cast(user_id as bigint) as user_id,
        cast(status as {{ dbt.type_string() }}) as status,
        cast(ordered_at as timestamp) as ordered_at,
        cast(updated_at as timestamp) as updated_at,
        cast(_extracted_at as timestamp) as extracted_at,
        cast(_rescued as {{ json_type() }}) as rescued_fields

    from source

),

final as (

    {{ distinct_versions('renamed', 'order_id') }}

)

select * from final
