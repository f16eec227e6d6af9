-- Per UTC date of ordered_at: the orders whose current status is completed, and the sum of
-- quantity x unit_price of their current items (the definition in _marts__models.yml).

with

orders as (

    select * from {{ ref('fct_orders') }}

),

completed_orders as (

    select * from orders where is_completed

),

final as (

    select
        cast(order_date as date) as revenue_date,
        cast(count(*) as bigint) as completed_orders,
        cast(sum(order_total) as decimal(38, 2)) as revenue

    from completed_orders
    group by order_date

)

select * from final
