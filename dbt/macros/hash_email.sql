{#-
    Salted SHA-256 of a normalised e-mail address: sha256(salt || ascii_lower(trim_spaces(email))),
    hex. NULL or blank e-mails give NULL. trim_spaces (cross_engine.sql) removes the Unicode
    space separators on both engines (Spark's trim() only the ASCII space: an address padded
    with a no-break space hashed differently on Spark, and one of blanks only was hashed there,
    NULL on DuckDB). Only A-Z is lowered (translate), on both engines:
    lower() maps other letters each engine its own way (DuckDB lower('İ') = 'i', Spark 'i̇';
    a final sigma), so a non-ASCII address hashed differently on Spark and DuckDB.

    The salt is a secret, and dbt writes every model's SQL to target/ (compiled, run,
    manifest.json) and logs/dbt.log: it must never be in the SQL. So no macro reads it (an
    `env_var()` call would also store its value in target/partial_parse.msgpack); the SQL names
    where the engine finds it at run time, see pii_salt() below. The orchestrator puts it in
    dbt's environment as DATA_PLATFORM_PII_SALT; unset or blank, the first row hashed fails the
    model with the message below (`dbt parse`, and models that hash nothing, do not need it).

    Only call this from a TABLE model: a view would hash with whatever salt its reader's session
    holds (none: an error), long after dbt ran.
-#}
{% macro hash_email(column) -%}
    {%- if execute and model.config.materialized not in ['table', 'incremental'] -%}
        {{ exceptions.raise_compiler_error(
            "hash_email() in " ~ model.name ~ " (materialized " ~ model.config.materialized
            ~ "): only tables may hash PII, a view would hash at read time without the salt.") }}
    {%- endif -%}
    {{ sha256_hex(pii_salt() ~ " || nullif(" ~ ascii_lower(trim_spaces(column)) ~ ", '')") }}
{%- endmacro %}


{#- a-z to A-Z, every other character as it is: the same on every engine. upper() maps other
    letters each engine its own way (DuckDB one letter for one, 'ß' -> 'ẞ'; Spark
    'ß' -> 'SS', the ligature 'ﬁ' -> 'FI'); the codes it normalises (ISO 3166, ISO 4217) are
    A-Z only, so no other letter can make a valid one. -#}
{% macro ascii_upper(expression) -%}
    translate({{ expression }}, 'abcdefghijklmnopqrstuvwxyz', 'ABCDEFGHIJKLMNOPQRSTUVWXYZ')
{%- endmacro %}


{#- A-Z to a-z, every other character as it is: the same on every engine. -#}
{% macro ascii_lower(expression) -%}
    translate({{ expression }}, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz')
{%- endmacro %}


{#- The salt as a SQL string expression that holds no part of it; fails when there is none. -#}
{% macro pii_salt() -%}
    {{ return(adapter.dispatch('pii_salt')()) }}
{%- endmacro %}

{#-
    DuckDB: a variable that the project's dbt-duckdb plugin sets on each of dbt's connections
    from DATA_PLATFORM_PII_SALT (data_platform/resources/dbt_salt_plugin.py, profiles.yml).
    Unset, getvariable() is a NULL of type NULL, which coalesce would pass over error() for:
    hence the cast.
-#}
{% macro default__pii_salt() -%}
    coalesce(nullif(cast(getvariable('data_platform_pii_salt') as varchar), ''), error('DATA_PLATFORM_PII_SALT is not set: the e-mail hash needs a secret salt. Set it in the environment of dbt (the orchestrator provides it).'))
{%- endmacro %}

{#-
    Spark: a session conf that profiles.yml's spark target sets from DATA_PLATFORM_PII_SALT, hex
    encoded (any character of a salt given by hand survives the trip), substituted by Spark's
    parser into the statement it runs (`${...}`, spark.sql.variable.substitute, on by default).
    Unset, the conf is empty; never substituted, the text is not hex: NULL either way, then
    raise_error. The conf's name must not match spark.redaction.regex (`secret`, `token`, ...):
    Spark then substitutes the redaction mark, not the value.
-#}
{% macro spark__pii_salt() -%}
    coalesce(nullif(decode(unhex('${spark.data_platform.pii_salt_hex}'), 'UTF-8'), ''), raise_error('DATA_PLATFORM_PII_SALT is not set: the e-mail hash needs a secret salt. Set it in the environment of dbt (the orchestrator provides it).'))
{%- endmacro %}
