-- AOV to the cent, half up, the same on every engine. Databricks divides decimals exactly, DuckDB
-- in double precision (2.01 / 2 would give 1.00499... and round down), so the division rounds
-- whole cents: floor(cents / orders + 1/2). Revenue is never negative (valid_price).
select
    order_date,
    revenue,
    order_count,
    cast(floor((revenue * 200 + order_count) / (order_count * 2)) / 100 as decimal(18, 2)) as avg_order_value
from {{ source('gold', 'agg_daily_sales') }}
