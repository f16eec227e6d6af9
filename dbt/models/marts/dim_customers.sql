-- Customers as SCD type 2 (one row per user version). No PII in clear: the e-mail only as
-- a salted hash, no name at all.

with

users_history as (

    select * from {{ ref('users_history') }}

),

final as (

    select
        cast(user_version_key as {{ dbt.type_string() }}) as customer_key,
        cast(user_id as bigint) as user_id,
        cast(email_hash as {{ dbt.type_string() }}) as email_hash,
        cast(country as {{ dbt.type_string() }}) as country,
        cast(created_at as timestamp) as created_at,
        cast(deleted_at as timestamp) as deleted_at,
        cast(is_deleted as boolean) as is_deleted,
        cast(valid_from as timestamp) as valid_from,
        cast(valid_to as timestamp) as valid_to,
        cast(is_current as boolean) as is_current

    from users_history

)

select * from final
