{#-
    Custom incremental strategy `dt_partition` (config incremental_strategy='dt_partition').

    The rule, on every engine: after a run,
      1. the partitions (partition column meta.partition_column, default `dt`) in the run's
         window (partition_window_filter: DATA_PLATFORM_MIN_DT..MAX_DT, or everything when
         no window is set) hold exactly the freshly selected rows, so rows that disappeared from the
         source disappear here too;
      2. when unique_key is set, no other partition keeps a row with a key that is being
         inserted: a record's first arrival can move to an earlier dt when a late file lands in
         an old dt folder, and its copy in the later partition must not survive as a duplicate;
      3. every other row is untouched;
      4. with meta.insert_condition (a SQL predicate on the model's columns), only the fresh
         rows meeting it are inserted; the others still take their key out of every other
         partition (rule 2): e.g. an event whose first arrival turned out to be of an unknown
         type (fct_events).
    Re-running the same window gives the same table: idempotent.

    Rendered per engine (adapter.dispatch):
      default (DuckDB): delete + delete + insert in one transaction (dbt-duckdb's incremental
        materialization commits once);
      spark (parquet, no Delta: no DELETE, no transactions): the partitions the rule touches
        are rewritten whole with a dynamic-partition INSERT OVERWRITE, then those left with no
        row are dropped (after: the source view reads them). See spark_incremental.sql for how
        dbt-spark reaches it.
-#}
{% macro get_incremental_dt_partition_sql(arg_dict) -%}
    {{ return(adapter.dispatch('get_incremental_dt_partition_sql')(arg_dict)) }}
{%- endmacro %}


{% macro dt_partition_column() -%}
    {{ return((config.get('meta') or {}).get('partition_column', 'dt')) }}
{%- endmacro %}


{#- The predicate a fresh row meets to be inserted (rule 4): meta.insert_condition, or true. -#}
{% macro dt_partition_insert_condition() -%}
    {{ return((config.get('meta') or {}).get('insert_condition') or 'true') }}
{%- endmacro %}


{% macro default__get_incremental_dt_partition_sql(arg_dict) -%}
    {%- set target = arg_dict['target_relation'] -%}
    {%- set source = arg_dict['temp_relation'] -%}
    {%- set unique_key = arg_dict['unique_key'] -%}
    {%- set partition_column = dt_partition_column() -%}
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
    where {{ dt_partition_insert_condition() }}
{%- endmacro %}


{% macro spark__get_incremental_dt_partition_sql(arg_dict) -%}
    {%- set target = arg_dict['target_relation'] -%}
    {%- set source = arg_dict['temp_relation'] -%}
    {%- set unique_key = arg_dict['unique_key'] -%}
    {%- set keys = ([unique_key] if unique_key is string else unique_key) if unique_key else [] -%}
    {%- set partition_column = dt_partition_column() -%}
    {%- set in_window = partition_window_filter(partition_column) -%}
    {%- set keys_csv = keys | join(', ') -%}

    {#- The partitions the rule touches: the window's, those the new rows go to, and those
        holding an older copy of a key being inserted. -#}
    {%- set touched_sql -%}
        select {{ partition_column }} from {{ target }} where {{ in_window }}
        union
        select {{ partition_column }} from {{ source }}
        {%- if keys %}
        union
        select {{ partition_column }} from {{ target }}
        where ({{ keys_csv }}) in (select {{ keys_csv }} from {{ source }})
        {%- endif %}
    {%- endset -%}
    {%- set touched = run_query(touched_sql).columns[0].values() | map('string') | list -%}

    {#- Their new content: the fresh rows, and the rows outside the window that stay. -#}
    {%- set dest_cols_csv = adapter.get_columns_in_relation(target) | map(attribute='quoted') | join(', ') -%}
    {%- set new_rows_sql -%}
        select {{ dest_cols_csv }} from {{ source }}
        where {{ dt_partition_insert_condition() }}
        union all
        select {{ dest_cols_csv }} from {{ target }}
        where {{ partition_in(partition_column, touched) }}
          and not ({{ in_window }})
          {%- if keys %}
          and ({{ keys_csv }}) not in (select {{ keys_csv }} from {{ source }})
          {%- endif %}
    {%- endset -%}

    {#- A partition left with no row is not rewritten by a dynamic overwrite: drop it, but
        only AFTER the overwrite has read the source. The source is dbt-spark's temp VIEW,
        evaluated when read, and its rows include the keys the window's partitions of the
        target hold now (partition_window_rows): dropping first emptied that subquery, and a
        key whose first arrival left the window (moved to a later dt) was lost instead of
        moved. The overwrite writes only the partitions of its rows, never the ones to drop,
        which still hold the old rows it reads. dbt-spark runs one statement per call, so the
        overwrite and the drops are run here, in that order, and the main statement dbt runs
        afterwards only reports what was done. -#}
    {%- set kept = run_query(
            'select distinct ' ~ partition_column ~ ' from (' ~ new_rows_sql ~ ') as new_rows'
        ).columns[0].values() | map('string') | list -%}
    {%- set emptied = [] -%}
    {%- for partition in touched if partition not in kept -%}
        {%- do emptied.append(partition) -%}
    {%- endfor -%}

    {%- do run_query('set spark.sql.sources.partitionOverwriteMode = DYNAMIC') -%}
    {%- do run_query(
            'insert overwrite table ' ~ target ~ ' partition (' ~ partition_column ~ ') '
            ~ new_rows_sql) -%}
    {%- for partition in emptied -%}
        {%- do run_query(
                'alter table ' ~ target ~ ' drop if exists partition ('
                ~ partition_column ~ " = '" ~ partition ~ "')") -%}
    {%- endfor -%}
    select
        {{ kept | length }} as partitions_rewritten,
        {{ emptied | length }} as partitions_dropped
{%- endmacro %}


{#- SQL predicate: column is one of the given ISO dates (false for none). -#}
{% macro partition_in(column, iso_dates) -%}
    {%- if iso_dates | length == 0 -%}
        false
    {%- else -%}
        {{ column }} in ({% for day in iso_dates %}date '{{ day }}'{{ ', ' if not loop.last }}{% endfor %})
    {%- endif -%}
{%- endmacro %}
