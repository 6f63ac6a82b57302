select
    order_date,
    sum(item_price) as revenue,
    count(distinct order_id) as order_count,
    cast(sum(item_price) / count(distinct order_id) as decimal(18, 2)) as avg_order_value
from {{ source('gold', 'sales_analytics') }}
group by order_date
