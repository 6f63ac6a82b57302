-- Gold: what the business reads. Every row here passed the Silver expectations.

CREATE OR REFRESH MATERIALIZED VIEW gold.sales_analytics
COMMENT 'Sales one big table for serving: one row per order item with its order (date, status, payment), customer and product. Filter on status as needed: every status counts in the KPIs.'
AS SELECT
  fact_orders.order_item_id,
  fact_orders.order_id,
  fact_orders.order_date,
  dim_orders.ordered_at,
  dim_orders.status,
  dim_orders.payment_method,
  fact_orders.customer_id,
  concat_ws(' ', dim_customer.first_name, dim_customer.last_name) AS customer_name,  -- First and last name.
  dim_customer.city AS customer_city,  -- The customer's city.
  dim_customer.country AS customer_country,  -- The customer's country.
  fact_orders.product_id,
  dim_product.product_name,
  dim_product.category,
  fact_orders.quantity,
  fact_orders.item_price
FROM silver.fact_orders
JOIN silver.dim_orders ON dim_orders.order_id = fact_orders.order_id
JOIN silver.dim_customer ON dim_customer.customer_id = fact_orders.customer_id
JOIN silver.dim_product ON dim_product.product_id = fact_orders.product_id;

CREATE OR REFRESH MATERIALIZED VIEW gold.agg_daily_sales
COMMENT 'Daily sales by order_date (Asia/Bangkok): revenue, orders, items sold and distinct customers.'
AS SELECT
  order_date,
  sum(item_price) AS revenue,  -- The day's order lines, summed (every status).
  count(DISTINCT order_id) AS order_count,  -- Orders placed that day.
  sum(quantity) AS items_sold,  -- Units sold that day.
  count(DISTINCT customer_id) AS customer_count  -- Distinct customers who ordered that day.
FROM gold.sales_analytics
GROUP BY order_date;
