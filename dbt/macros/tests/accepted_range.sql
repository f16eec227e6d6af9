{#-
    Fails on every row whose value lies outside [min_value, max_value] (or the open interval
    when inclusive=false). Either bound may be omitted. NULLs pass (pair with not_null).
-#}
{% test accepted_range(model, column_name, min_value=none, max_value=none, inclusive=true) %}
    {%- if min_value is none and max_value is none -%}
        {{ exceptions.raise_compiler_error("accepted_range on " ~ column_name ~ ": set min_value, max_value or both") }}
    {%- endif -%}
    {%- set lower_op = '>=' if inclusive else '>' -%}
    {%- set upper_op = '<=' if inclusive else '<' -%}

with

validation as (
    select {{ column_name }} as value_checked
    from {{ model }}
    where {{ column_name }} is not null
),

failures as (
    select *
    from validation
    where not (
        true
        {%- if min_value is not none %}
        and value_checked {{ lower_op }} {{ min_value }}
        {%- endif %}
        {%- if max_value is not none %}
        and value_checked {{ upper_op }} {{ max_value }}
        {%- endif %}
    )
)

select * from failures

{% endtest %}
