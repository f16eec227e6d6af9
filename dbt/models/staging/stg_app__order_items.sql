-- Every distinct version of every order line (grain: order_item_id, updated_at).

with

source as (

    select * from {{ source('app', 'order_items') }}

),

renamed as (

    select
        cast(id as bigint) as order_item_id,
        cast(order_id as bigint) as order_id,
        cast(product_id as bigint) as product_id,
        cast(quantity as integer) as quantity,
        cast(unit_price as decimal(10, 2)) as unit_price,
        cast(updated_at as timestamp) as updated_at,
        cast(_extracted_at as timestamp) as extracted_at,
        cast(_rescued as {{ json_type() }}) as rescued_fields

    from source

),

final as (

    {{ distinct_versions('renamed', 'order_item_id') }}

)

select * from final
