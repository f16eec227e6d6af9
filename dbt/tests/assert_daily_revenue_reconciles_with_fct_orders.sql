-- daily_revenue must add up, day by day, to the completed orders of fct_orders.
-- Returns the days that disagree.

with

daily_revenue as (

    select * from {{ ref('daily_revenue') }}

),

expected as (

    select
        order_date as revenue_date,
        count(*) as completed_orders,
        sum(order_total) as revenue

    from {{ ref('fct_orders') }}
    where status = 'completed'
    group by order_date

),

compared as (

    select
        coalesce(daily_revenue.revenue_date, expected.revenue_date) as revenue_date,
        daily_revenue.completed_orders,
        expected.completed_orders as expected_completed_orders,
        daily_revenue.revenue,
        expected.revenue as expected_revenue

    from daily_revenue
    full outer join expected
        on daily_revenue.revenue_date = expected.revenue_date

)

select *
from compared
where completed_orders is distinct from expected_completed_orders
   or revenue is distinct from expected_revenue
