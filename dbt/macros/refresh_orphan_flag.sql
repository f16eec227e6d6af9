{#-
    Post-hook of the partitioned facts. An orphan flag is computed when a partition is built;
    the parent (a user, an order) may be extracted later than the child record. Clear the flag
    on every row, in any partition, whose parent now exists, so the flag never stays stale.
    Parents are never removed (soft deletes only), so a flag never has to be set back to true
    outside a rebuild of its partition.

    Rendered per engine (adapter.dispatch):
      default (DuckDB): an UPDATE, inside the model's transaction;
      spark (parquet: no UPDATE): the partitions holding a stale flag are rewritten whole
        (dynamic-partition INSERT OVERWRITE) with the flag recomputed; nothing is written
        when no flag is stale.
-#}
{% macro refresh_orphan_flag(flag_column, key_column, parent_relation, parent_key) -%}
    {{ return(adapter.dispatch('refresh_orphan_flag')(flag_column, key_column, parent_relation, parent_key)) }}
{%- endmacro %}


{% macro default__refresh_orphan_flag(flag_column, key_column, parent_relation, parent_key) -%}
    update {{ this }}
    set {{ flag_column }} = false
    where {{ flag_column }}
      and {{ key_column }} in (
          select {{ parent_key }} from {{ parent_relation }} where {{ parent_key }} is not null
      )
{%- endmacro %}


{% macro spark__refresh_orphan_flag(flag_column, key_column, parent_relation, parent_key) -%}
    {%- set partition_column = dt_partition_column() -%}
    {%- set stale -%}
        {{ flag_column }}
        and {{ key_column }} in (
            select {{ parent_key }} from {{ parent_relation }} where {{ parent_key }} is not null
        )
    {%- endset -%}
    {%- set touched = [] -%}
    {%- if execute -%}
        {%- set touched = run_query(
                'select distinct ' ~ partition_column ~ ' from ' ~ this ~ ' where ' ~ stale
            ).columns[0].values() | map('string') | list -%}
    {%- endif -%}
    {%- if touched | length == 0 -%}
    select 'no stale {{ flag_column }}' as refresh_orphan_flag
    {%- else -%}
    {%- set columns = [] -%}
    {%- for column in adapter.get_columns_in_relation(this) -%}
        {%- if column.name == flag_column -%}
            {%- do columns.append('case when ' ~ stale ~ ' then false else ' ~ flag_column ~ ' end as ' ~ column.quoted) -%}
        {%- else -%}
            {%- do columns.append(column.quoted) -%}
        {%- endif -%}
    {%- endfor -%}
    {%- do run_query('set spark.sql.sources.partitionOverwriteMode = DYNAMIC') -%}
    insert overwrite table {{ this }} partition ({{ partition_column }})
    select {{ columns | join(', ') }}
    from {{ this }}
    where {{ partition_in(partition_column, touched) }}
    {%- endif -%}
{%- endmacro %}
