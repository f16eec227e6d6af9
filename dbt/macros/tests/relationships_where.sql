{#-
    Referential integrity with filters: every non-null `column_name` of the rows of `model`
    matching from_condition must exist as `field` among the rows of `to` matching
    to_condition. Fails on each child row without a parent.
-#}
{% test relationships_where(model, column_name, to, field, from_condition='1 = 1', to_condition='1 = 1') %}

with

children as (
    select {{ column_name }} as child_value
    from {{ model }}
    where {{ column_name }} is not null
      and ({{ from_condition }})
),

parents as (
    select distinct {{ field }} as parent_value
    from {{ to }}
    where {{ to_condition }}
),

failures as (
    select children.child_value
    from children
    left join parents
        on children.child_value = parents.parent_value
    where parents.parent_value is null
)

select * from failures

{% endtest %}
