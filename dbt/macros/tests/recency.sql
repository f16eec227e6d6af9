{#-
    Fails (one row) when the most recent `field` of the model is older than `interval`
    `datepart`s before now (UTC), or when the model has no non-null value at all.
    `field` may be a DATE or a naive-UTC TIMESTAMP.
-#}
{% test recency(model, field, datepart, interval, column_name=none) %}
    {%- set threshold = dbt.dateadd(datepart, -1 * (interval | int), utc_now()) -%}

with

latest as (
    select max(cast({{ field }} as timestamp)) as most_recent
    from {{ model }}
),

failures as (
    select
        most_recent,
        {{ threshold }} as threshold
    from latest
    where most_recent is null
       or most_recent < {{ threshold }}
)

select * from failures

{% endtest %}
