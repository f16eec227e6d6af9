-- Every distinct version of every product (grain: product_id, updated_at).

with

source as (

    select * from {{ source('app', 'products') }}

),

renamed as (

    select
        cast(id as bigint) as product_id,
        cast(sku as {{ dbt.type_string() }}) as sku,
        cast(name as {{ dbt.type_string() }}) as product_name,
        cast(category as {{ dbt.type_string() }}) as category,
        cast(unit_price as decimal(10, 2)) as unit_price,
        cast(updated_at as timestamp) as updated_at,
        cast(_extracted_at as timestamp) as extracted_at,
        cast(_rescued as {{ json_type() }}) as rescued_fields

    from source

),

final as (

    {{ distinct_versions('renamed', 'product_id') }}

)

select * from final
