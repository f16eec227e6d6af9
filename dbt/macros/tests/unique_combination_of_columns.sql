{#-
    Fails on each combination of the given columns that occurs more than once.
-#}
{% test unique_combination_of_columns(model, combination_of_columns) %}
    {%- set columns_csv = combination_of_columns | join(', ') -%}

with

failures as (
    select
        {{ columns_csv }},
        count(*) as n_rows
    from {{ model }}
    group by {{ columns_csv }}
    having count(*) > 1
)

select * from failures

{% endtest %}
