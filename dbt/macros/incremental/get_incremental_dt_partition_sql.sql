{#-
    Custom incremental strategy `dt_partition` (config incremental_strategy='dt_partition').

    Replaces, in one transaction (dbt-duckdb's incremental materialization commits once):
      1. every target row whose partition column (meta.partition_column, default `dt`) lies in
         the run's window (partition_window_filter: the vars window, or everything when no vars
         are given), so rows that disappeared from the source disappear here too;
      2. when unique_key is set, any other target row with a key that is being inserted: a
         record's first arrival can move to an earlier dt when a late file lands in an old dt
         folder, and its copy in the later partition must not survive as a duplicate;
    then inserts the freshly selected rows (already filtered to the window by the model).
    Re-running the same window gives the same table: idempotent.
-#}
{% macro get_incremental_dt_partition_sql(arg_dict) -%}
    {%- set target = arg_dict['target_relation'] -%}
    {%- set source = arg_dict['temp_relation'] -%}
    {%- set unique_key = arg_dict['unique_key'] -%}
    {%- set partition_column = (config.get('meta') or {}).get('partition_column', 'dt') -%}
    {%- set dest_cols_csv = get_quoted_csv(arg_dict['dest_columns'] | map(attribute='name')) -%}

    delete from {{ target }}
    where {{ partition_window_filter(partition_column) }};

    {% if unique_key -%}
    {%- set keys = [unique_key] if unique_key is string else unique_key -%}
    delete from {{ target }} as dbt_target
    using {{ source }} as dbt_source
    where {% for key in keys %}dbt_source.{{ key }} = dbt_target.{{ key }}{% if not loop.last %} and {% endif %}{% endfor %};
    {%- endif %}

    insert into {{ target }} ({{ dest_cols_csv }})
    select {{ dest_cols_csv }}
    from {{ source }}
{%- endmacro %}
