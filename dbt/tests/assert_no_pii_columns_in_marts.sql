-- No e-mail address or full name in clear in marts (DESIGN.md): no column may be named like
-- one, except the salted email_hash. Returns the offending columns.
-- The refs make the test run after the marts it inspects:
-- depends_on: {{ ref('dim_customers') }}
-- depends_on: {{ ref('customer_lifetime_value') }}
-- depends_on: {{ ref('fct_orders') }}
-- depends_on: {{ ref('fct_events') }}
-- depends_on: {{ ref('fct_payments') }}

with

marts_columns as (

    {{ schema_columns('marts') }}

)

select
    table_name,
    column_name

from marts_columns
where (lower(column_name) like '%email%' and lower(column_name) <> 'email_hash')
   or lower(column_name) like '%full_name%'
   or lower(column_name) in ('name', 'first_name', 'last_name')
