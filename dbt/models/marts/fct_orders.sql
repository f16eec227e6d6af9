-- Orders, current version of each (one row per order_id), with totals of their current lines
-- and the customer version they were placed under (customer_key), so that a join to the SCD2
-- dim_customers on its key gives one row, the customer as they were.

with

orders as (

    select * from {{ ref('stg_app__orders') }}
    where is_latest_version

),

order_items as (

    select * from {{ ref('fct_order_items') }}

),

customer_versions as (

    select
        customer_key,
        user_id,
        valid_from,
        valid_to,
        row_number() over (partition by user_id order by valid_from) = 1 as is_first_version

    from {{ ref('dim_customers') }}

),

customers as (

    select distinct user_id from customer_versions

),

order_totals as (

    select
        order_id,
        count(*) as item_count,
        sum(quantity) as total_quantity,
        sum(line_total) as order_total

    from order_items
    group by order_id

),

final as (

    select
        cast(orders.order_id as bigint) as order_id,
        cast(orders.user_id as bigint) as user_id,
        cast(customer_versions.customer_key as {{ dbt.type_string() }}) as customer_key,
        cast(orders.status as {{ dbt.type_string() }}) as status,
        coalesce(orders.status = 'completed', false) as is_completed,
        cast(orders.ordered_at as timestamp) as ordered_at,
        cast(orders.ordered_at as date) as order_date,
        cast(orders.updated_at as timestamp) as updated_at,
        cast(coalesce(order_totals.item_count, 0) as bigint) as item_count,
        cast(coalesce(order_totals.total_quantity, 0) as bigint) as total_quantity,
        cast(coalesce(order_totals.order_total, 0) as decimal(38, 2)) as order_total,
        cast(customers.user_id is null as boolean) as is_orphan_user

    from orders
    left join order_totals
        on orders.order_id = order_totals.order_id
    left join customers
        on orders.user_id = customers.user_id
    -- The version valid at ordered_at; an order placed before the first version the
    -- extraction saw (versions start at their updated_at) is given that first version.
    left join customer_versions
        on orders.user_id = customer_versions.user_id
        and (orders.ordered_at >= customer_versions.valid_from or customer_versions.is_first_version)
        and (orders.ordered_at < customer_versions.valid_to or customer_versions.valid_to is null)

)

select * from final
