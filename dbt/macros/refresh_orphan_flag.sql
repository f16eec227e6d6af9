{#-
    Post-hook of the partitioned facts. An orphan flag is computed when a partition is built;
    the parent (a user, an order) may be extracted later than the child record. Clear the flag
    on every row, in any partition, whose parent now exists, inside the same transaction, so
    the flag never stays stale. Parents are never removed (soft deletes only), so a flag never
    has to be set back to true outside a rebuild of its partition.
-#}
{% macro refresh_orphan_flag(flag_column, key_column, parent_relation, parent_key) -%}
    update {{ this }}
    set {{ flag_column }} = false
    where {{ flag_column }}
      and {{ key_column }} in (
          select {{ parent_key }} from {{ parent_relation }} where {{ parent_key }} is not null
      )
{%- endmacro %}
