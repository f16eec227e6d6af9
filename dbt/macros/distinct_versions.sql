{#-
    The body of a staging model over a raw version log: every (key, updated_at) once, each with
    `is_latest_version`. The extraction appends only unseen versions, so a repeat can only come
    from a re-extraction of the same row: the first extraction is kept.
-#}
{% macro distinct_versions(relation, key) %}
    select
        *,
        row_number() over (partition by {{ key }} order by updated_at desc) = 1
            as is_latest_version
    from (
        select *
        from {{ relation }}
        qualify row_number() over (
            partition by {{ key }}, updated_at order by extracted_at
        ) = 1
    )
{% endmacro %}
