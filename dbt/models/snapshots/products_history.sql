-- SCD type 2 history of products, built from every version of the raw version log.
-- A version is valid from its updated_at until the next version's. A version of the log that
-- changes none of the published columns is no version of its own: it extends the one before
-- it (macro is_new_version).

with

products as (

    select * from {{ ref('stg_app__products') }}

),

changes as (

    select
        product_id,
        sku,
        product_name,
        category,
        unit_price,
        updated_at,
        {{ is_new_version('product_id', 'updated_at', [
            'sku', 'product_name', 'category', 'unit_price',
        ]) }} as is_new_version

    from products

),

versions as (

    select
        product_id,
        sku,
        product_name,
        category,
        unit_price,
        updated_at as valid_from,
        lead(updated_at) over (
            partition by product_id order by updated_at
        ) as valid_to

    from changes
    where is_new_version

),

final as (

    select
        {{ dbt.hash(dbt.concat([
            'cast(product_id as ' ~ dbt.type_string() ~ ')',
            "'|'",
            'cast(valid_from as ' ~ dbt.type_string() ~ ')',
        ])) }} as product_version_key,
        product_id,
        sku,
        product_name,
        category,
        unit_price,
        valid_from,
        valid_to,
        valid_to is null as is_current

    from versions

)

select * from final
