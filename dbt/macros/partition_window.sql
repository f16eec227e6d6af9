{#-
    Partition window of the `partitioned` models (fct_events, fct_payments).

    Contract with the orchestrator: vars `min_dt` and `max_dt`, ISO dates (YYYY-MM-DD),
    inclusive, both or neither. They may arrive as strings or as YAML dates
    (`--vars '{min_dt: 2026-01-05, max_dt: 2026-01-05}'` parses them as dates).

    partition_window()          -> none, or {'min_dt': 'YYYY-MM-DD', 'max_dt': 'YYYY-MM-DD'}
    partition_window_filter(c)  -> SQL predicate on column c: the window, or `true` when no
                                   window applies (no vars, or a --full-refresh run, which
                                   always rebuilds everything).
-#}
{% macro partition_window() -%}
    {%- set raw_values = {'min_dt': var('min_dt', none), 'max_dt': var('max_dt', none)} -%}
    {%- set window = {} -%}
    {%- for name in ['min_dt', 'max_dt'] -%}
        {%- set value = raw_values[name] -%}
        {%- if value is not none and (value | string | trim) != '' -%}
            {%- set text = value | string | trim -%}
            {%- if not modules.re.match('^[0-9]{4}-[0-9]{2}-[0-9]{2}$', text) -%}
                {{ exceptions.raise_compiler_error(
                    "var " ~ name ~ "=" ~ text ~ " is not an ISO date: pass YYYY-MM-DD, e.g. "
                    ~ "--vars '{min_dt: 2026-01-05, max_dt: 2026-01-05}'") }}
            {%- endif -%}
            {%- set year, month, day = text.split('-') | map('int') | list -%}
            {%- set next_month_start = modules.datetime.date(year + (month // 12), month % 12 + 1, 1)
                    if 1 <= month <= 12 else none -%}
            {%- if next_month_start is none
                   or not (1 <= day <= (next_month_start - modules.datetime.timedelta(days=1)).day) -%}
                {{ exceptions.raise_compiler_error(
                    "var " ~ name ~ "=" ~ text ~ " is not a calendar date: pass YYYY-MM-DD") }}
            {%- endif -%}
            {%- do window.update({name: text}) -%}
        {%- endif -%}
    {%- endfor -%}
    {%- if window | length == 0 -%}
        {{ return(none) }}
    {%- elif window | length == 1 -%}
        {{ exceptions.raise_compiler_error(
            "vars min_dt and max_dt go together (inclusive ISO dates); got only "
            ~ (window.keys() | list | first) ~ ". Pass both, or neither to build everything.") }}
    {%- elif window['min_dt'] > window['max_dt'] -%}
        {{ exceptions.raise_compiler_error(
            "var min_dt=" ~ window['min_dt'] ~ " is after max_dt=" ~ window['max_dt']
            ~ ": the window is inclusive, min_dt <= max_dt.") }}
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
