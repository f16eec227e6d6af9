{#-
    SCD type 2 invariants of a history table, per entity (entity_key):
      - exactly one current row;
      - is_current is true exactly on the open-ended row (valid_to is null);
      - validity is contiguous: each valid_to equals the next version's valid_from,
        so there is neither a gap nor an overlap;
      - every closed interval is non-empty (valid_to > valid_from), valid_from is not null.
    Fails on every row breaking one of them, with the reason.
-#}
{% test scd2_validity(model, entity_key, valid_from='valid_from', valid_to='valid_to', is_current='is_current') %}

with

versions as (
    select
        {{ entity_key }} as entity_key,
        {{ valid_from }} as valid_from,
        {{ valid_to }} as valid_to,
        {{ is_current }} as is_current,
        lead({{ valid_from }}) over (
            partition by {{ entity_key }} order by {{ valid_from }}
        ) as next_valid_from,
        sum(case when {{ is_current }} then 1 else 0 end) over (
            partition by {{ entity_key }}
        ) as current_rows
    from {{ model }}
),

checked as (
    select
        *,
        case
            when valid_from is null then 'valid_from is null'
            when is_current is null then 'is_current is null'
            when current_rows <> 1 then 'entity has ' || current_rows || ' current rows'
            when is_current <> (valid_to is null) then 'is_current disagrees with valid_to'
            when valid_to is distinct from next_valid_from then 'valid_to is not the next valid_from'
            when valid_to <= valid_from then 'empty or negative interval'
        end as failure
    from versions
),

failures as (
    select * from checked where failure is not null
)

select * from failures

{% endtest %}
