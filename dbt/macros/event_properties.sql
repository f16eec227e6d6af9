{#-
    The event properties marts publish. `properties` is free-form JSON from the apps: any key
    may hold personal data (an e-mail in a signup form, a note). Marts keep only the keys the
    platform knows and uses (the simulator's and the contract's, as fct_events' description
    in models/marts/_marts__models.yml lists them: channel, page, product_id, quantity,
    order_id, amount, currency), each with its type; every other key is dropped.
    A string that looks like an e-mail address is dropped too, whatever its key. `page` is a
    path: its query string and fragment are dropped (`/signup?name=Jane+Doe#step2` ->
    `/signup`), where forms and trackers put what a visitor typed; nothing left, no page.
    dbt/README.md, "PII": no e-mail address in clear in marts.

    published_event_properties(column) -> a JSON document (DuckDB JSON, Spark text) holding
    the allowed keys that are present with a value of their type, in the order below; `{}`
    when none is; NULL for NULL. Same rule on both engines, which each parse the JSON:
      string keys: any non-null value, as text (a number or an object as its JSON text:
        Spark's from_json reads a string field so); path keys: a string key's text up to its
        first ? or #, dropped when empty;
      bigint keys: a JSON integer within BIGINT; double keys: a JSON number. A value of
        another type is dropped (Spark's from_json gives NULL for it; it would read the
        strings "NaN", "Infinity", "-INF", ... as doubles: allowNonNumericNumbers off);
      a key the object names more than once is dropped: JSON leaves its meaning open, and
        DuckDB's reader takes the first value, Spark's from_json the last (as a line that
        repeats a top-level field is a dead letter, README "Choosing an engine").
-#}
{% macro published_event_property_types() -%}
    {{ return([
        ('channel', 'string'),
        ('page', 'path'),
        ('product_id', 'bigint'),
        ('quantity', 'bigint'),
        ('order_id', 'bigint'),
        ('amount', 'double'),
        ('currency', 'string'),
    ]) }}
{%- endmacro %}

{#- Something@something.something, somewhere in a string: an e-mail address, its @ also
    percent-encoded (a page's query string: ?email=jane%40example.com) or full-width (U+FF20).
    `in_json`: in a JSON document's text (the PII test reads fct_events' properties whole), where
    an address stays inside one string: no double quote in the match, which across the quotes
    took a page "/@alice" and a number 12.5 beside it for one address and failed the build. A
    string value alone keeps them: "jane.doe"@example.com is an address too.
    No backslash (Spark's SQL literals would eat it), the same regular expression on RE2 and
    Java. -#}
{% macro email_pattern(in_json=false) -%}
    {%- set other = '[^@ "]+' if in_json else '[^@ ]+' -%}
    {{ other }}(@|%40|＠){{ other }}[.]{{ other }}
{%- endmacro %}


{#- A path key's text without its query string and fragment, NULL when nothing is left. -#}
{% macro page_path(text) -%}
    nullif(split_part(split_part({{ text }}, '?', 1), '#', 1), '')
{%- endmacro %}


{% macro published_event_properties(column) -%}
    {{ return(adapter.dispatch('published_event_properties')(column)) }}
{%- endmacro %}

{% macro default__published_event_properties(column) -%}
    case when {{ column }} is not null then json_merge_patch('{}', to_json(struct_pack(
        {%- for key, type in published_event_property_types() %}
        {%- set path = "'$." ~ key ~ "'" %}
        {%- set kind = 'json_type(' ~ column ~ ', ' ~ path ~ ')' %}
        {%- set text = '(' ~ column ~ ' ->> ' ~ path ~ ')' %}
        {{ key }} := case
            when {{ json_key_count(column, key) }} <> 1 then null
            {%- if type == 'path' %}
            when {{ kind }} <> 'NULL'
             and not regexp_matches({{ page_path(text) }}, '{{ email_pattern() }}')
             then {{ page_path(text) }}
            {%- elif type == 'string' %}
            when {{ kind }} <> 'NULL'
             and not regexp_matches({{ text }}, '{{ email_pattern() }}') then {{ text }}
            {%- elif type == 'bigint' %}
            when {{ kind }} in ('UBIGINT', 'BIGINT') then try_cast({{ text }} as bigint)
            {%- else %}
            when {{ kind }} in ('UBIGINT', 'BIGINT', 'DOUBLE') then try_cast({{ text }} as double)
            {%- endif %}
        end{{ ',' if not loop.last }}
        {%- endfor %}
    ))) end
{%- endmacro %}

{% macro spark__published_event_properties(column) -%}
    {%- set schema -%}
        {%- for key, type in published_event_property_types() -%}
        {{ key }} {{ 'string' if type == 'path' else type }}{{ ', ' if not loop.last }}
        {%- endfor -%}
    {%- endset -%}
    case when {{ column }} is not null then to_json(named_struct(
        {%- for key, type in published_event_property_types() %}
        {%- set field = 'from_json(' ~ column ~ ", '" ~ schema ~ "', map('allowNonNumericNumbers', 'false'))." ~ key %}
        {%- set once = json_key_count(column, key) ~ ' = 1' %}
        '{{ key }}',
        {%- if type == 'path' %}
        case when {{ once }} and not ({{ page_path(field) }} rlike '{{ email_pattern() }}') then {{ page_path(field) }} end
        {%- elif type == 'string' %}
        case when {{ once }} and not ({{ field }} rlike '{{ email_pattern() }}') then {{ field }} end
        {%- else %}
        case when {{ once }} then {{ field }} end
        {%- endif %}{{ ',' if not loop.last }}
        {%- endfor %}
    )) end
{%- endmacro %}
