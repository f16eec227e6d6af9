{#-
    dbt-spark's incremental materialization knows four strategies by name (append, merge,
    insert_overwrite, microbatch) and rejects any other, custom ones included. These two
    overrides of its helpers (a root-project macro takes precedence over the adapter's) let
    `dt_partition` through to get_incremental_dt_partition_sql (spark__ rendering), and hand
    every other strategy back to dbt-spark unchanged. Only dbt-spark calls them.
-#}
{% macro dbt_spark_validate_get_incremental_strategy(raw_strategy, file_format) -%}
    {%- if raw_strategy == 'dt_partition' -%}
        {%- if file_format not in ['parquet', 'orc', 'delta', 'iceberg', 'hudi'] -%}
            {{ exceptions.raise_compiler_error(
                "incremental_strategy dt_partition needs a partitioned table format, got "
                ~ file_format) }}
        {%- endif -%}
        {{ return(raw_strategy) }}
    {%- endif -%}
    {{ return(dbt_spark.dbt_spark_validate_get_incremental_strategy(raw_strategy, file_format)) }}
{%- endmacro %}


{% macro dbt_spark_get_incremental_sql(strategy, source, target, existing, unique_key, incremental_predicates) -%}
    {%- if strategy == 'dt_partition' -%}
        {{ get_incremental_dt_partition_sql({
            'target_relation': target,
            'temp_relation': source,
            'unique_key': unique_key,
            'dest_columns': adapter.get_columns_in_relation(target),
            'incremental_predicates': incremental_predicates,
        }) }}
    {%- else -%}
        {{ dbt_spark.dbt_spark_get_incremental_sql(
            strategy, source, target, existing, unique_key, incremental_predicates) }}
    {%- endif -%}
{%- endmacro %}
