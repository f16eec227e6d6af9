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

final as (

    {{ distinct_versions('renamed', 'product_id') }}

)

select * from final
