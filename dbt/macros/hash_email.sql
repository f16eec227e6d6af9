{#-
    Salted SHA-256 of a normalised e-mail address: sha256(salt || lower(trim(email))), hex.
    NULL or blank e-mails give NULL.

    The salt comes from the environment variable DATA_PLATFORM_PII_SALT, which the
    orchestrator provides; there is no usable default: any run that executes SQL fails when it
    is unset or blank. (`dbt parse` does not need it, so the manifest can be prepared on a
    machine that does not hold the secret.)

    Only call this from a TABLE model: the salt is inlined in the compiled SQL, and a view
    would store that SQL, salt included, in the warehouse catalog (duckdb_views()).
-#}
{% macro hash_email(column) -%}
    {%- set salt = env_var('DATA_PLATFORM_PII_SALT', '') -%}
    {%- if execute and (salt | trim) == '' -%}
        {{ exceptions.raise_compiler_error(
            "DATA_PLATFORM_PII_SALT is not set: the e-mail hash needs a secret salt. "
            ~ "Set it in the environment of dbt (the orchestrator provides it).") }}
    {%- endif -%}
    {%- if execute and model.config.materialized not in ['table', 'incremental'] -%}
        {{ exceptions.raise_compiler_error(
            "hash_email() in " ~ model.name ~ " (materialized " ~ model.config.materialized
            ~ "): only tables may hash PII, a view would store the salt in the catalog.") }}
    {%- endif -%}
    {{ sha256_hex("'" ~ dbt.escape_single_quotes(salt) ~ "' || nullif(lower(trim(" ~ column ~ ")), '')") }}
{%- endmacro %}
