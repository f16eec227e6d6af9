-- Every distinct version of every product (grain: product_id, updated_at).

with

source as (

    select * from {{ source('raw', 'products') }}

),

renamed as (

    select
        cast(id as bigint) as product_id,
        cast(sku as varchar) as sku,
        cast(name as varchar) as product_name,
        cast(category as varchar) as category,
        cast(unit_price as decimal(10, 2)) as unit_price,
        cast(updated_at as timestamp) as updated_at,
        cast(_extracted_at as timestamp) as extracted_at

    from source

),

deduplicated as (

    select *
    from renamed
    qualify row_number() over (
        partition by product_id, updated_at
        order by extracted_at, sku, product_name, category, unit_price
    ) = 1

),

final as (

    select
        product_id,
        sku,
        product_name,
        category,
        unit_price,
        updated_at,
        extracted_at,
        row_number() over (
            partition by product_id order by updated_at desc
        ) = 1 as is_latest_version

    from deduplicated

)

select * from final
