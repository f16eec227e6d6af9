-- Per UTC date of occurred_at, the distinct user_ids in fct_events (the definition in
-- _marts__models.yml).

with

events as (

    select * from {{ ref('fct_events') }}

),

final as (

    select
        cast(occurred_date as date) as activity_date,
        cast(count(distinct user_id) as bigint) as active_users

    from events
    group by occurred_date

)

select * from final
