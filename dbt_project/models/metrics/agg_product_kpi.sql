select
    order_date,
    product_id,
    product_name,
    category,
    sum(quantity) as quantity_sold,
    sum(item_price) as revenue
from {{ source('gold', 'sales_analytics') }}
group by order_date, product_id, product_name, category
