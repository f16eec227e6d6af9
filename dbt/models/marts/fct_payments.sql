-- Deduplicated payments (one row per payment_id, at its first arrival's dt), every status.
-- Incremental per arrival day: see macros/partition_window.sql and the dt_partition strategy
-- (macros/incremental/). On Spark the table is partitioned by dt (a folder a day), which the
-- strategy rewrites a partition at a time; dbt-duckdb ignores partition_by on a table.

{{
    config(
        materialized='incremental',
        incremental_strategy='dt_partition',
        unique_key='payment_id',
        on_schema_change='append_new_columns',
        meta={'partition_column': 'dt'},
        partition_by=['dt'],
        tags=['partitioned'],
        post_hook="{{ refresh_orphan_flag('is_orphan_order', 'order_id', ref('fct_orders'), 'order_id') }}",
    )
}}

with

payments as (

    select * from {{ ref('stg_payments__payments') }}
    where {{ partition_window_rows('payment_id') }}

),

orders as (

    select order_id from {{ ref('fct_orders') }}

),

final as (

    select
        cast(payments.payment_id as {{ dbt.type_string() }}) as payment_id,
        cast(payments.order_id as bigint) as order_id,
        cast(payments.amount as decimal(18, 4)) as amount,
        cast(payments.currency as {{ dbt.type_string() }}) as currency,
        cast(payments.status as {{ dbt.type_string() }}) as status,
        cast(payments.created_at as timestamp) as created_at,
        cast(payments.created_at as date) as payment_date,
        cast(payments.is_known_status as boolean) as is_known_status,
        cast(
            payments.amount between {{ var('payment_amount_min') }} and {{ var('payment_amount_max') }}
            as boolean
        ) as is_amount_in_range,
        cast(orders.order_id is null as boolean) as is_orphan_order,
        cast(payments.dt as date) as dt,
        cast(payments.source_file as {{ dbt.type_string() }}) as source_file,
        cast(payments.source_line_number as bigint) as source_line_number,
        cast(payments.loaded_at as timestamp) as loaded_at

    from payments
    left join orders
        on payments.order_id = orders.order_id

)

select * from final
