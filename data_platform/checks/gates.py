"""Which Pandera model guards which asset.

Raw gates are ERROR and blocking: a broken raw table must not flow into staging and marts.
Mart gates are ERROR and blocking too: they hold cross-column rules dbt's tests do not (a date
that is not the day of its timestamp, an order total that is not the sum of its lines, an SCD2
interval that runs backwards), and a breach there means a model computes wrong numbers, which
must not reach the aggregates and analytics built on them. A gate blocks only downstream
*steps*: models built in the same dbt invocation as the checked one are already written.

The gates of the daily-partitioned tables keep a verdict per day (`per_day`): the raw files'
(as the other blocking checks of those tables do) and the partitioned facts' (`fct_events`,
`fct_payments`, judged in the run of the facts' dbt step, a verdict per day of its window, each
about that day's materialization). A bad day of a backfill stays failed until a run of that day
passes: with one verdict a run, a later good run of any day recorded a pass that hid it, from
the UI and from automation. A failed day holds its own days downstream; a reader of the whole
table (daily_active_users reads every day of fct_events) is held while any day is failed, since
built it would publish that day's numbers (automation/conditions.follows_inputs). The other
gates judge an unpartitioned table whole, one verdict a run.

raw.dead_letter has no step of its own (the file assets write it in their transactions), so a
check on it would never run with them; each file asset gates its own slice of it instead.
"""

import dagster as dg

from data_platform.checks.pandera_gate import Gate

# Totals recomputed from each line's quantity and price, not from its line_total: summing the
# mart's own line totals repeated fct_orders' arithmetic, so a wrong line total passed. From
# the mart built with fct_orders, not from staging's live view of raw: an extraction between
# the build and this check (another run's step in the pool) would fail it with nothing wrong.
# Multiplied at 38 digits, as the mart's line_total (dbt macro line_total): DuckDB types a bare
# INTEGER x DECIMAL(10,2) DECIMAL(18,2), which a legal line overflows.
ORDERS_WITH_ITEM_TOTALS = """
    SELECT orders.*, coalesce(items.items_total, 0) AS items_total
    FROM marts.fct_orders AS orders
    LEFT JOIN (
        SELECT order_id, sum(CAST(quantity AS DECIMAL(38, 0)) * unit_price) AS items_total
        FROM marts.fct_order_items GROUP BY order_id
    ) AS items USING (order_id)
"""


def _key(table: str) -> dg.AssetKey:
    return dg.AssetKey(table.split("."))


def _gate(table: str, model: str, **options) -> Gate:
    return Gate(_key(table), model, table, **options)


def _dead_letter_gate(source: str) -> Gate:
    return Gate(
        _key(f"raw.{source}"),
        "RawDeadLetter",
        "raw.dead_letter",
        partitioned=True,
        per_day=True,
        where=f"source = '{source}'",
        name="pandera_dead_letter",
    )


GATES = [
    _gate("raw.users", "RawUsers"),
    _gate("raw.products", "RawProducts"),
    _gate("raw.orders", "RawOrders"),
    _gate("raw.order_items", "RawOrderItems"),
    _gate("raw.events", "RawEvents", partitioned=True, per_day=True),
    _gate("raw.payments", "RawPayments", partitioned=True, per_day=True),
    _dead_letter_gate("events"),
    _dead_letter_gate("payments"),
    _gate(
        "marts.fct_orders",
        "FctOrders",
        query=ORDERS_WITH_ITEM_TOTALS,
        additional_deps=(_key("marts.fct_order_items"),),
    ),
    _gate("marts.fct_events", "FctEvents", partitioned=True, per_day=True),
    _gate("marts.fct_payments", "FctPayments", partitioned=True, per_day=True),
    _gate("marts.dim_customers", "DimCustomers"),
    _gate("marts.daily_revenue", "DailyRevenue"),
]


def required_columns(table: str) -> list[str]:
    """The columns `table`'s blocking gate (raw.users, ...) requires non-null. The extraction
    refuses a NULL there before writing it: written, the version stayed in the log for good,
    and the gate, which judges the whole log, failed on every later run, the row fixed in the
    app or not."""
    [gate] = [g for g in GATES if g.table == table and g.name == "pandera_schema"]
    schema = gate.model_class.to_schema()
    return [name for name, column in schema.columns.items() if not column.nullable]
