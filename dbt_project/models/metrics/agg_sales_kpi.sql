select
    order_date,
    revenue,
    order_count,
    cast(revenue / order_count as decimal(18, 2)) as avg_order_value
from {{ source('gold', 'agg_daily_sales') }}
