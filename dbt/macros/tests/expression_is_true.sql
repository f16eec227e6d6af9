{#-
    Fails on every row where the SQL expression is not true (false or NULL).
    At model level: `expression: "order_total >= 0"`; at column level the column name is
    prefixed: column `order_total`, `expression: ">= 0"`.
-#}
{% test expression_is_true(model, expression, column_name=none) %}

with

failures as (
    select *
    from {{ model }}
    where not coalesce(({{ column_name ~ ' ' if column_name else '' }}{{ expression }}), false)
)

select * from failures

{% endtest %}
