{#-
    The body of a staging model over a raw version log: every (key, updated_at) once, each with
    `is_latest_version`. The extraction appends only unseen versions, so a repeat can only come
    from a re-extraction of the same row: the first extraction is kept.
    The latest version is the one extracted last (then the highest updated_at): each run reads
    a row's state as it is then, so a row's versions land in the order they were committed. A
    version stamped in the future (a source clock ahead) was otherwise current for good: every
    real change after it, with a smaller updated_at, was taken for an older one.
-#}
{% macro distinct_versions(relation, key) %}
    select
        *,
        row_number() over (
            partition by {{ key }} order by extracted_at desc, updated_at desc
        ) = 1 as is_latest_version
    from (
        select *
        from {{ relation }}
        qualify row_number() over (
            partition by {{ key }}, updated_at order by extracted_at
        ) = 1
    )
{% endmacro %}


{#-
    True on a row of a version log (one row per key and order_by) that starts a version of
    its own: the key's first row, or one where any of `columns` differs from the row before
    (NULL = NULL counts as equal). A row equal to the one before in every column only
    extends that version (e.g. a change of a column the history does not publish).
-#}
{% macro is_new_version(key, order_by, columns) -%}
    {%- set window = 'over (partition by ' ~ key ~ ' order by ' ~ order_by ~ ')' -%}
    (
        lag({{ order_by }}) {{ window }} is null
        {%- for column in columns %}
        or lag({{ column }}) {{ window }} is distinct from {{ column }}
        {%- endfor %}
    )
{%- endmacro %}
