{#-
    Where DuckDB and Spark SQL truly differ, the rule is written once here and rendered per
    engine with adapter.dispatch: default__ is DuckDB's form (the embedded warehouse), spark__
    Spark's. Everything portable is written in plain SQL or with dbt's cross-database macros
    (dbt.type_string, dbt.hash, dbt.concat, dbt.date_trunc, dbt.dateadd, dbt.last_day, ...).
    See README.md, "Two targets".
-#}

{#- Column type of a JSON document: DuckDB has JSON; Spark keeps the text (a string). -#}
{% macro json_type() -%}
    {{ return(adapter.dispatch('json_type')()) }}
{%- endmacro %}

{% macro default__json_type() -%}
    json
{%- endmacro %}

{% macro spark__json_type() -%}
    {{ dbt.type_string() }}
{%- endmacro %}


{#- Lower-case hex SHA-256 of a string (64 characters); NULL in, NULL out. -#}
{% macro sha256_hex(expression) -%}
    {{ return(adapter.dispatch('sha256_hex')(expression)) }}
{%- endmacro %}

{% macro default__sha256_hex(expression) -%}
    sha256({{ expression }})
{%- endmacro %}

{% macro spark__sha256_hex(expression) -%}
    sha2({{ expression }}, 256)
{%- endmacro %}


{#- True when the whole string matches the regular expression (not a substring of it). -#}
{% macro regexp_full_match(expression, pattern) -%}
    {{ return(adapter.dispatch('regexp_full_match')(expression, pattern)) }}
{%- endmacro %}

{% macro default__regexp_full_match(expression, pattern) -%}
    regexp_full_match({{ expression }}, '{{ pattern }}')
{%- endmacro %}

{% macro spark__regexp_full_match(expression, pattern) -%}
    ({{ expression }} rlike '^(?:{{ pattern }})\\z')
{%- endmacro %}


{#- True when the regular expression matches somewhere in the string. -#}
{% macro regexp_contains(expression, pattern) -%}
    {{ return(adapter.dispatch('regexp_contains')(expression, pattern)) }}
{%- endmacro %}

{% macro default__regexp_contains(expression, pattern) -%}
    regexp_matches({{ expression }}, '{{ pattern }}')
{%- endmacro %}

{% macro spark__regexp_contains(expression, pattern) -%}
    ({{ expression }} rlike '{{ pattern }}')
{%- endmacro %}


{#-
    Now, as a naive TIMESTAMP that means UTC (like every raw timestamp). DuckDB's now() is a
    TIMESTAMPTZ: convert it. Spark's TIMESTAMP is an instant shown in the session time zone,
    which the profile pins to UTC.
-#}
{% macro utc_now() -%}
    {{ return(adapter.dispatch('utc_now')()) }}
{%- endmacro %}

{% macro default__utc_now() -%}
    cast(timezone('UTC', now()) as timestamp)
{%- endmacro %}

{% macro spark__utc_now() -%}
    current_timestamp()
{%- endmacro %}


{#- One row per day from start_date to end_date (inclusive): a set-returning select item,
    alone in its expression (Spark allows no generator inside another expression). -#}
{% macro date_series(start_date, end_date) -%}
    {{ return(adapter.dispatch('date_series')(start_date, end_date)) }}
{%- endmacro %}

{% macro default__date_series(start_date, end_date) -%}
    unnest(generate_series({{ start_date }}, {{ end_date }}, interval 1 day))
{%- endmacro %}

{% macro spark__date_series(start_date, end_date) -%}
    explode(sequence({{ start_date }}, {{ end_date }}, interval 1 day))
{%- endmacro %}


{#-
    Calendar attributes of a DATE that the engines name differently:
      month_name, day_name (English), iso_day_of_week (1 = Monday ... 7 = Sunday),
      iso_week (1-53), iso_year (the ISO week-numbering year).
-#}
{% macro calendar_part(part, date_expression) -%}
    {%- set parts = ['month_name', 'day_name', 'iso_day_of_week', 'iso_week', 'iso_year'] -%}
    {%- if part not in parts -%}
        {{ exceptions.raise_compiler_error(
            "calendar_part: unknown part " ~ part ~ ", expected one of " ~ parts | join(', ')) }}
    {%- endif -%}
    {{ return(adapter.dispatch('calendar_part')(part, date_expression)) }}
{%- endmacro %}

{% macro default__calendar_part(part, date_expression) -%}
    {%- set functions = {
        'month_name': 'monthname', 'day_name': 'dayname', 'iso_day_of_week': 'isodow',
        'iso_week': 'week', 'iso_year': 'isoyear'} -%}
    {{ functions[part] }}({{ date_expression }})
{%- endmacro %}

{% macro spark__calendar_part(part, date_expression) -%}
    {%- if part == 'month_name' -%} date_format({{ date_expression }}, 'MMMM')
    {%- elif part == 'day_name' -%} date_format({{ date_expression }}, 'EEEE')
    {%- elif part == 'iso_day_of_week' -%} extract(dayofweek_iso from {{ date_expression }})
    {%- elif part == 'iso_week' -%} weekofyear({{ date_expression }})
    {%- else -%} extract(yearofweek from {{ date_expression }})
    {%- endif -%}
{%- endmacro %}


{#-
    The (table_name, column_name) of every table and view in a warehouse schema, as a query.
    DuckDB has information_schema; Spark's session catalog has none, so the list is read
    through the adapter (the catalog) when the query is rendered, and inlined.
-#}
{% macro schema_columns(schema_name) -%}
    {{ return(adapter.dispatch('schema_columns')(schema_name)) }}
{%- endmacro %}

{% macro default__schema_columns(schema_name) -%}
    select table_name, column_name
    from information_schema.columns
    where table_schema = '{{ schema_name }}'
{%- endmacro %}

{% macro spark__schema_columns(schema_name) -%}
    {%- set rows = [] -%}
    {#- A schema not built yet (analytics before its first Python build) has no columns: Spark's
        SHOW TABLES IN it fails, DuckDB's information_schema just has no rows. -#}
    {%- if execute and (run_query("show schemas like '" ~ schema_name ~ "'").rows | length) > 0 -%}
        {%- for table in run_query('show tables in ' ~ schema_name) if not table['isTemporary'] -%}
            {%- set relation = api.Relation.create(schema=schema_name, identifier=table['tableName']) -%}
            {%- for column in adapter.get_columns_in_relation(relation) -%}
                {%- do rows.append((table['tableName'], column.name)) -%}
            {%- endfor -%}
        {%- endfor -%}
    {%- endif -%}
    {%- if rows -%}
    select table_name, column_name
    from values
        {%- for table_name, column_name in rows %}
        ('{{ table_name }}', '{{ column_name }}'){{ ',' if not loop.last }}
        {%- endfor %}
        as columns (table_name, column_name)
    {%- else -%}
    select cast(null as string) as table_name, cast(null as string) as column_name
    where false
    {%- endif -%}
{%- endmacro %}


{#-
    An order line's quantity x unit_price, as the marts hold money: DECIMAL(38,2). The source's
    types (INTEGER x DECIMAL(10,2)) allow 2147483647 x 99999999.99 = 2.1e17, and DuckDB types
    the bare product DECIMAL(18,2): such a line, legal by type, overflowed and stopped the core
    layer. At 38 digits no sum of lines a source can hold overflows.
-#}
{% macro line_total(quantity, unit_price) -%}
    (cast({{ quantity }} as decimal(38, 0)) * {{ unit_price }})
{%- endmacro %}


{#-
    numerator / denominator, exact, rounded half away from zero to `scale` decimals, as a
    DECIMAL(38, scale). The numerator is a number with at most `scale` decimals (e.g. a
    DECIMAL(38,2) sum of money for scale 2), the denominator a positive integer (a count).
    DuckDB divides a DECIMAL in binary floating point (DOUBLE), then rounds the float: 1.15 / 2
    gave 0.57 there, 0.58 on Spark. Here both engines divide whole numbers (units of
    10^-scale, up to 38 digits: a BIGINT overflowed past 9.2e16 of money):
    q = (2|n| + d) div 2d, then put the sign and the scale back.
-#}
{% macro divide_half_up(numerator, denominator, scale=2) -%}
    {%- set units = 'cast((' ~ numerator ~ ') * ' ~ (10 ** scale) ~ ' as decimal(38, 0))' -%}
    {%- set count = 'cast(' ~ denominator ~ ' as decimal(38, 0))' -%}
    {%- set magnitude = whole_quotient('2 * abs(' ~ units ~ ') + ' ~ count, '2 * ' ~ count) -%}
    cast(
        (case when {{ units }} < 0 then -({{ magnitude }}) else {{ magnitude }} end)
        * {{ '1' if scale == 0 else '0.' ~ '0' * (scale - 1) ~ '1' }}
        as decimal(38, {{ scale }})
    )
{%- endmacro %}


{#- The whole part of dividend / divisor, both whole and >= 0, up to 38 digits, exact, as a
    DECIMAL(38,0). -#}
{% macro whole_quotient(dividend, divisor) -%}
    {{ return(adapter.dispatch('whole_quotient')(dividend, divisor)) }}
{%- endmacro %}

{#- HUGEINT division is exact (a DECIMAL's `/` is a DOUBLE's). -#}
{% macro default__whole_quotient(dividend, divisor) -%}
    cast(cast({{ dividend }} as hugeint) // cast({{ divisor }} as hugeint) as decimal(38, 0))
{%- endmacro %}

{#- Spark has no 128-bit integer (`div` gives a BIGINT) and rounds a DECIMAL quotient to six
    decimals, so its floor is one too many when the quotient lies within 5e-7 below a whole
    number: taken back where quotient x divisor passes the dividend. A quotient of more than
    32 digits fails there (ANSI overflow): an average order of 1e30 in money. -#}
{% macro spark__whole_quotient(dividend, divisor) -%}
    {%- set rounded = 'floor((' ~ dividend ~ ') / (' ~ divisor ~ '))' -%}
    ({{ rounded }} - case when {{ rounded }} * ({{ divisor }}) > ({{ dividend }}) then 1 else 0 end)
{%- endmacro %}


{#-
    The string without the spaces around it: the Unicode space separators (category Zs: the
    ASCII space, no-break space U+00A0, U+1680, U+2000-U+200A, U+202F, U+205F, the
    ideographic space U+3000), not tabs or line breaks. DuckDB's one-argument trim() removes
    exactly these, Spark's only the ASCII space: a code or an e-mail padded with a no-break
    space (a spreadsheet export) was trimmed on DuckDB, kept as it was on Spark (another
    currency, another e-mail hash). Here both name the set: the var space_separators, which
    the Python checks that read raw as staging does read too (checks/vocabulary.py).
-#}
{% macro space_separators() -%}
    {{ return(var('space_separators')) }}
{%- endmacro %}

{% macro trim_spaces(expression) -%}
    {{ return(adapter.dispatch('trim_spaces')(expression)) }}
{%- endmacro %}

{% macro default__trim_spaces(expression) -%}
    trim({{ expression }}, '{{ space_separators() }}')
{%- endmacro %}

{% macro spark__trim_spaces(expression) -%}
    trim(both '{{ space_separators() }}' from {{ expression }})
{%- endmacro %}


{#- How many times a JSON object (DuckDB JSON, Spark text) names `key` at its top level: a key
    may be given twice in one object, which JSON leaves open (DuckDB's reader takes the
    first value, Spark's from_json the last). -#}
{% macro json_key_count(column, key) -%}
    {{ return(adapter.dispatch('json_key_count')(column, key)) }}
{%- endmacro %}

{% macro default__json_key_count(column, key) -%}
    len(list_filter(json_keys({{ column }}), lambda k: k = '{{ key }}'))
{%- endmacro %}

{% macro spark__json_key_count(column, key) -%}
    size(filter(json_object_keys({{ column }}), k -> k = '{{ key }}'))
{%- endmacro %}
