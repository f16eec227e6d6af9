-- Calendar: one row per day from var start_date (default DATA_PLATFORM_START_DATE, then
-- 2026-01-01) to var end_date (default 31 December of next year, UTC).

{%- set start_date = var('start_date', env_var('DATA_PLATFORM_START_DATE', '2026-01-01')) | string | trim %}
{%- set end_date = var('end_date', none) %}

with

bounds as (

    select
        cast('{{ start_date }}' as date) as start_date,
        {% if end_date is not none -%}
        cast('{{ end_date | string | trim }}' as date) as end_date
        {%- else -%}
        make_date(year(cast({{ utc_now() }} as date)) + 1, 12, 31) as end_date
        {%- endif %}

),

spine as (

    select {{ date_series('start_date', 'end_date') }} as date_day
    from bounds

),

final as (

    select
        cast(date_day as date) as date_day,
        cast(year(date_day) as integer) as year,
        cast(quarter(date_day) as integer) as quarter,
        cast(month(date_day) as integer) as month,
        cast({{ calendar_part('month_name', 'date_day') }} as {{ dbt.type_string() }}) as month_name,
        cast(day(date_day) as integer) as day_of_month,
        cast({{ calendar_part('iso_day_of_week', 'date_day') }} as integer) as iso_day_of_week,
        cast({{ calendar_part('day_name', 'date_day') }} as {{ dbt.type_string() }}) as day_name,
        cast({{ calendar_part('iso_week', 'date_day') }} as integer) as iso_week,
        cast({{ calendar_part('iso_year', 'date_day') }} as integer) as iso_year,
        cast({{ calendar_part('iso_day_of_week', 'date_day') }} in (6, 7) as boolean) as is_weekend,
        cast({{ dbt.date_trunc('week', 'date_day') }} as date) as week_start_date,
        cast({{ dbt.date_trunc('month', 'date_day') }} as date) as month_start_date

    from spine

)

select * from final
