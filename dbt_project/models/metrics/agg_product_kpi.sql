select
    order_date,
    product_id,
    product_name,
    category,
    cast(sum(quantity) as bigint) as quantity_sold,
    sum(item_price) as revenue
from {{ source('gold', 'sales_analytics') }}
group by order_date, product_id, product_name, category
