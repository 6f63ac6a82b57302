with first_orders as (
    select customer_id, min(order_date) as first_order_date
    from {{ source('gold', 'sales_analytics') }}
    group by customer_id
)

select
    sales.order_date,
    count(distinct sales.customer_id) as active_customers,
    count(distinct case when first_orders.first_order_date = sales.order_date
                        then sales.customer_id end) as new_customers
from {{ source('gold', 'sales_analytics') }} as sales
join first_orders on first_orders.customer_id = sales.customer_id
group by sales.order_date
