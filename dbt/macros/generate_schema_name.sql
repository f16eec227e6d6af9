{#-
    Warehouse schema names are a contract (dbt/README.md): staging, snapshots, marts.
    dbt's default would prefix them with the target schema (main_staging); use a model's
    custom schema verbatim instead, and the target schema only when none is configured.
-#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
