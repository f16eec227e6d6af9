-- Every distinct version of every order (grain: order_id, updated_at).

with

source as (

    select * from {{ source('raw', 'orders') }}

),

renamed as (

    select
        cast(id as bigint) as order_id,
        cast(user_id as bigint) as user_id,
        cast(status as varchar) as status,
        cast(ordered_at as timestamp) as ordered_at,
        cast(updated_at as timestamp) as updated_at,
        cast(_extracted_at as timestamp) as extracted_at

    from source

),

deduplicated as (

    select *
    from renamed
    qualify row_number() over (
        partition by order_id, updated_at
        order by extracted_at, status, user_id, ordered_at
    ) = 1

),

final as (

    select
        order_id,
        user_id,
        status,
        ordered_at,
        updated_at,
        extracted_at,
        row_number() over (
            partition by order_id order by updated_at desc
        ) = 1 as is_latest_version

    from deduplicated

)

select * from final
