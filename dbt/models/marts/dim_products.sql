-- Products, current version (one row per product). Their history is in
-- snapshots.products_history; order lines carry the price they were sold at.

with

products_history as (

    select * from {{ ref('products_history') }}

),

version_counts as (

    select
        product_id,
        count(*) as version_count,
        min(valid_from) as first_seen_at

    from products_history
    group by product_id

),

current_versions as (

    select * from products_history where is_current

),

final as (

    select
        cast(current_versions.product_id as bigint) as product_id,
        cast(current_versions.sku as {{ dbt.type_string() }}) as sku,
        cast(current_versions.product_name as {{ dbt.type_string() }}) as product_name,
        cast(current_versions.category as {{ dbt.type_string() }}) as category,
        cast(current_versions.unit_price as decimal(10, 2)) as unit_price,
        cast(version_counts.first_seen_at as timestamp) as first_seen_at,
        cast(current_versions.valid_from as timestamp) as updated_at,
        cast(version_counts.version_count as bigint) as version_count

    from current_versions
    inner join version_counts
        on current_versions.product_id = version_counts.product_id

)

select * from final
