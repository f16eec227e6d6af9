{#- Helpers of the two staging models over landing files (events, payments). -#}

{#- The lineage columns every landing-file raw table carries, renamed for staging. -#}
{% macro landing_file_lineage_columns() %}
        cast(_rescued as {{ json_type() }}) as rescued_fields,
        cast(dt as date) as dt,
        cast(_source_file as {{ dbt.type_string() }}) as source_file,
        cast(_line_number as bigint) as source_line_number,
        cast(_loaded_at as timestamp) as loaded_at
{%- endmacro %}

{#- `column` is one of the values listed in the dbt var `var_name` (e.g. known_event_types). -#}
{% macro in_var_list(column, var_name) -%}
    {{ column }} in (
        {%- for value in var(var_name) %}
        '{{ value }}'{{ ',' if not loop.last }}
        {%- endfor %}
    )
{%- endmacro %}
