-- SCD type 2 history of users, built from every version of the raw version log (not a dbt
-- snapshot: all intermediate versions are kept even when several changes happened between
-- two extractions). A version is valid from its updated_at until the next version's.
-- A version of the log that changes none of the columns published here (the full name only,
-- or the e-mail's letter case: the same hash) is no version of its own: it extends the one
-- before it (macro is_new_version).
-- PII: the e-mail is hashed here (a table, so the salt never lands in a view definition);
-- full_name does not leave staging.

with

users as (

    select * from {{ ref('stg_app__users') }}

),

published as (

    select
        user_id,
        {{ hash_email('email') }} as email_hash,
        country,
        created_at,
        deleted_at,
        is_deleted,
        updated_at

    from users

),

changes as (

    select
        *,
        {{ is_new_version('user_id', 'updated_at', [
            'email_hash', 'country', 'created_at', 'deleted_at', 'is_deleted',
        ]) }} as is_new_version

    from published

),

versions as (

    select
        user_id,
        email_hash,
        country,
        created_at,
        deleted_at,
        is_deleted,
        updated_at as valid_from,
        lead(updated_at) over (
            partition by user_id order by updated_at
        ) as valid_to

    from changes
    where is_new_version

),

final as (

    select
        {{ dbt.hash(dbt.concat([
            'cast(user_id as ' ~ dbt.type_string() ~ ')',
            "'|'",
            'cast(valid_from as ' ~ dbt.type_string() ~ ')',
        ])) }} as user_version_key,
        user_id,
        email_hash,
        country,
        created_at,
        deleted_at,
        is_deleted,
        valid_from,
        valid_to,
        valid_to is null as is_current

    from versions

)

select * from final
