-- One row per payment_id: its FIRST arrival (earliest dt, then source file, then line).
-- Unknown statuses and out-of-range amounts are kept and flagged downstream.

with

source as (

    select * from {{ source('payments', 'payments') }}

),

renamed as (

    select
        cast(payment_id as {{ dbt.type_string() }}) as payment_id,
        cast(order_id as bigint) as order_id,
        cast(amount as decimal(18, 4)) as amount,
        -- Unicode spaces trimmed, a-z upper-cased, alike on both engines (macros ascii_upper,
        -- trim_spaces).
        {{ ascii_upper(trim_spaces('currency')) }} as currency,
        cast(status as {{ dbt.type_string() }}) as status,
        -- ingestion already normalised created_at to naive UTC
        cast(created_at as timestamp) as created_at,
        {{ landing_file_lineage_columns() }}

    from source

),

first_arrivals as (

    {{ first_arrival('renamed', 'payment_id') }}

),

final as (

    select
        payment_id,
        order_id,
        amount,
        currency,
        status,
        {{ in_var_list('status', 'known_payment_statuses') }} as is_known_status,
        created_at,
        rescued_fields,
        dt,
        source_file,
        source_line_number,
        loaded_at,
        arrival_count

    from first_arrivals

)

select * from final
