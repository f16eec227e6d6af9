{#-
    The body of a staging model over a landing-file source: one row per `key`, the first
    arrival (earliest dt, then file, then line), with how many times the key arrived.
-#}
{% macro first_arrival(relation, key) %}
    select
        *,
        count(*) over (partition by {{ key }}) as arrival_count
    from {{ relation }}
    qualify row_number() over (
        partition by {{ key }}
        order by dt, source_file, source_line_number
    ) = 1
{% endmacro %}
