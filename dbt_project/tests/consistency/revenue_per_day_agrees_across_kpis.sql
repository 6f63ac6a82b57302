{{ config(meta={'dagster': {'ref': {'name': 'agg_product_kpi'}}}) }}
-- Each day's revenue is the same in agg_product_kpi (summed over products) as in agg_sales_kpi.
select
    coalesce(sales.order_date, products.order_date) as order_date,
    sales.revenue as sales_kpi_revenue,
    products.revenue as product_kpi_revenue
from {{ ref('agg_sales_kpi') }} as sales
full outer join (
    select order_date, sum(revenue) as revenue from {{ ref('agg_product_kpi') }} group by order_date
) as products on products.order_date = sales.order_date
where sales.revenue is null or products.revenue is null or sales.revenue <> products.revenue
