-- Per customer (current version of every user, deleted ones included): completed orders and
-- the revenue they brought. No PII.

with

customers as (

    select * from {{ ref('dim_customers') }}
    where is_current

),

orders as (

    select * from {{ ref('fct_orders') }}

),

customer_orders as (

    select
        user_id,
        count(*) as total_orders,
        count(*) filter (where is_completed) as completed_orders,
        coalesce(sum(order_total) filter (where is_completed), 0) as lifetime_revenue,
        min(order_date) filter (where is_completed) as first_order_date,
        max(order_date) filter (where is_completed) as last_order_date

    from orders
    group by user_id

),

final as (

    select
        cast(customers.user_id as bigint) as user_id,
        cast(customers.country as {{ dbt.type_string() }}) as country,
        cast(customers.is_deleted as boolean) as is_deleted,
        cast(coalesce(customer_orders.total_orders, 0) as bigint) as total_orders,
        cast(coalesce(customer_orders.completed_orders, 0) as bigint) as completed_orders,
        cast(coalesce(customer_orders.lifetime_revenue, 0) as decimal(38, 2)) as lifetime_revenue,
        -- Exact, half away from zero, on both engines (DuckDB's decimal division is a float).
        cast(
            case
                when customer_orders.completed_orders > 0
                    then {{ divide_half_up(
                        'customer_orders.lifetime_revenue', 'customer_orders.completed_orders', 2
                    ) }}
            end as decimal(38, 2)
        ) as average_order_value,
        cast(customer_orders.first_order_date as date) as first_order_date,
        cast(customer_orders.last_order_date as date) as last_order_date

    from customers
    left join customer_orders
        on customers.user_id = customer_orders.user_id

)

select * from final
