{{ config(severity='warn', meta={'dagster': {'ref': {'name': 'daily_revenue'}}}) }}
-- A check of daily_revenue (meta.dagster.ref): the model it reconciles.
-- daily_revenue, day by day, against the same definition computed on another path: straight
-- from staging (the latest version of each order and of each order line), not through
-- fct_orders / fct_order_items as the model is. A wrong version picked, a line lost or
-- doubled by a join, a wrong date or status in the marts shows here. Warn, as its twin for
-- daily_active_users: staging is a view over raw, so an extraction that fct_orders has not
-- been rebuilt for yet differs from it too. Returns the days that disagree.

with

daily_revenue as (

    select * from {{ ref('daily_revenue') }}

),

completed_orders as (

    select order_id, cast(ordered_at as date) as revenue_date
    from {{ ref('stg_app__orders') }}
    where is_latest_version
      and status = 'completed'

),

order_lines as (

    select order_id, {{ line_total('quantity', 'unit_price') }} as line_total
    from {{ ref('stg_app__order_items') }}
    where is_latest_version

),

order_revenue as (

    select
        completed_orders.order_id,
        completed_orders.revenue_date,
        coalesce(sum(order_lines.line_total), 0) as revenue

    from completed_orders
    left join order_lines
        on completed_orders.order_id = order_lines.order_id
    group by completed_orders.order_id, completed_orders.revenue_date

),

expected as (

    select
        revenue_date,
        count(*) as completed_orders,
        sum(revenue) as revenue

    from order_revenue
    group by revenue_date

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
