-- Orders, current version of each (one row per order_id), with totals of their current lines.

with

orders as (

    select * from {{ ref('stg_app__orders') }}
    where is_latest_version

),

order_items as (

    select * from {{ ref('fct_order_items') }}

),

customers as (

    select distinct user_id from {{ ref('dim_customers') }}

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
        cast(orders.status as {{ dbt.type_string() }}) as status,
        cast(orders.ordered_at as timestamp) as ordered_at,
        cast(orders.ordered_at as date) as order_date,
        cast(orders.updated_at as timestamp) as updated_at,
        cast(coalesce(order_totals.item_count, 0) as bigint) as item_count,
        cast(coalesce(order_totals.total_quantity, 0) as bigint) as total_quantity,
        cast(coalesce(order_totals.order_total, 0) as decimal(18, 2)) as order_total,
        cast(customers.user_id is null as boolean) as is_orphan_user

    from orders
    left join order_totals
        on orders.order_id = order_totals.order_id
    left join customers
        on orders.user_id = customers.user_id

)

select * from final
