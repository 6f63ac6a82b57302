select
    order_date,
    revenue,
    order_count,
    {{ divide_half_up('revenue', 'order_count', 2) }} as avg_order_value
from {{ source('gold', 'agg_daily_sales') }}
