-- Order lines, current version of each (one row per order_item_id).

with

order_items as (

    select * from {{ ref('stg_app__order_items') }}
    where is_latest_version

),

final as (

    select
        cast(order_item_id as bigint) as order_item_id,
        cast(order_id as bigint) as order_id,
        cast(product_id as bigint) as product_id,
        cast(quantity as integer) as quantity,
        cast(unit_price as decimal(10, 2)) as unit_price,
        cast({{ line_total('quantity', 'unit_price') }} as decimal(38, 2)) as line_total,
        cast(updated_at as timestamp) as updated_at

    from order_items

)

select * from final
