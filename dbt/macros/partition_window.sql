{#-
    Partition window of the `partitioned` models (fct_events, fct_payments).

    Contract with the orchestrator: environment variables DATA_PLATFORM_MIN_DT and
    DATA_PLATFORM_MAX_DT, ISO dates (YYYY-MM-DD), inclusive, both or neither (empty = unset):
        DATA_PLATFORM_MIN_DT=2026-01-05 DATA_PLATFORM_MAX_DT=2026-01-07 dbt build -s tag:partitioned
    Not dbt vars: dbt re-parses the whole project whenever vars change, i.e. at every new
    window. They are read only while executing (`execute`), so parsing never depends on them
    and partial parsing survives a new window; no parse-time SQL needs the window.

    partition_window()          -> none, or {'min_dt': 'YYYY-MM-DD', 'max_dt': 'YYYY-MM-DD'}
    partition_window_filter(c)  -> SQL predicate on column c: the window, or `true` when no
                                   window applies (none set, or a --full-refresh run, which
                                   always rebuilds everything).
-#}
{% macro partition_window() -%}
    {%- if not execute -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set raw_values = {
        'min_dt': env_var('DATA_PLATFORM_MIN_DT', ''),
        'max_dt': env_var('DATA_PLATFORM_MAX_DT', ''),
    } -%}
    {%- set window = {} -%}
    {%- for name in ['min_dt', 'max_dt'] -%}
        {%- set value = raw_values[name] -%}
        {%- if value is not none and (value | string | trim) != '' -%}
            {%- set text = value | string | trim -%}
            {%- if not modules.re.match('^[0-9]{4}-[0-9]{2}-[0-9]{2}$', text) -%}
                {{ exceptions.raise_compiler_error(
                    "DATA_PLATFORM_" ~ name | upper ~ "=" ~ text
                    ~ " is not an ISO date: pass YYYY-MM-DD, e.g. 2026-01-05") }}
            {%- endif -%}
            {%- set year, month, day = text.split('-') | map('int') | list -%}
            {%- set next_month_start = modules.datetime.date(year + (month // 12), month % 12 + 1, 1)
                    if 1 <= month <= 12 else none -%}
            {%- if next_month_start is none
                   or not (1 <= day <= (next_month_start - modules.datetime.timedelta(days=1)).day) -%}
                {{ exceptions.raise_compiler_error(
                    "DATA_PLATFORM_" ~ name | upper ~ "=" ~ text
                    ~ " is not a calendar date: pass YYYY-MM-DD") }}
            {%- endif -%}
            {%- do window.update({name: text}) -%}
        {%- endif -%}
    {%- endfor -%}
    {%- if window | length == 0 -%}
        {{ return(none) }}
    {%- elif window | length == 1 -%}
        {{ exceptions.raise_compiler_error(
            "DATA_PLATFORM_MIN_DT and DATA_PLATFORM_MAX_DT go together (inclusive ISO dates); "
            ~ "got only DATA_PLATFORM_" ~ (window.keys() | list | first | upper)
            ~ ". Set both, or neither to build everything.") }}
    {%- elif window['min_dt'] > window['max_dt'] -%}
        {{ exceptions.raise_compiler_error(
            "DATA_PLATFORM_MIN_DT=" ~ window['min_dt'] ~ " is after DATA_PLATFORM_MAX_DT="
            ~ window['max_dt'] ~ ": the window is inclusive, min <= max.") }}
    {%- endif -%}
    {{ return(window) }}
{%- endmacro %}


{% macro partition_window_filter(column='dt') -%}
    {%- set window = partition_window() -%}
    {%- if window is none or should_full_refresh() -%}
        true
    {%- else -%}
        {{ column }} between date '{{ window["min_dt"] }}' and date '{{ window["max_dt"] }}'
    {%- endif -%}
{%- endmacro %}


{#-
    partition_window_rows(key, c) -> SQL predicate selecting a partitioned fact's source rows:
    those in the window, and, on an incremental run with a window, those whose key the
    window's partitions hold now. The strategy empties the window's partitions; a row whose
    first arrival left the window (its earlier copy gone from raw, the day re-ingested) is then
    selected at the dt it has now, outside the window, instead of being deleted with the window
    and left out until that other day is rebuilt.
-#}
{% macro partition_window_rows(key, column='dt') -%}
    {%- set in_window = partition_window_filter(column) | trim -%}
    {%- if is_incremental() and in_window != 'true' -%}
        ({{ in_window }} or {{ key }} in (select {{ key }} from {{ this }} where {{ in_window }}))
    {%- else -%}
        {{ in_window }}
    {%- endif -%}
{%- endmacro %}
