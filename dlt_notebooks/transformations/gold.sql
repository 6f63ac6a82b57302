-- Gold: what the business reads. Every row here passed the Silver expectations.

CREATE OR REFRESH MATERIALIZED VIEW gold.sales_analytics
COMMENT 'Sales one big table for serving: one row per order item with its order (date, status, payment), customer and product as they are now, and the customer and product versions that held when the order was placed (their surrogate keys, the city and country then, the list price then). Filter on status as needed: every status counts in the KPIs.'
AS SELECT
  fact_orders.order_item_id,
  fact_orders.order_id,
  fact_orders.order_date,
  fact_orders.ordered_at,
  dim_orders.status,
  dim_orders.payment_method,
  dim_orders.payment_method_key,  -- Its silver.dim_payment_method member (unknown for a method the shop does not accept).
  fact_orders.customer_id,
  customer_then.customer_sk,
  concat_ws(' ', dim_customer.first_name, dim_customer.last_name) AS customer_name,  -- First and last name.
  dim_customer.city AS customer_city,  -- The customer's city now.
  dim_customer.country AS customer_country,  -- The customer's country now.
  customer_then.city AS customer_city_at_order,  -- The customer's city when the order was placed.
  customer_then.country AS customer_country_at_order,  -- The customer's country when the order was placed.
  fact_orders.product_id,
  product_then.product_sk,
  dim_product.product_name,
  dim_product.category,
  product_then.unit_price AS list_price_at_order,  -- The product's list price when the order was placed.
  fact_orders.quantity,
  fact_orders.item_price
FROM silver.fact_orders
JOIN silver.dim_orders ON dim_orders.order_id = fact_orders.order_id
JOIN silver.dim_customer ON dim_customer.customer_id = fact_orders.customer_id
JOIN silver.dim_product ON dim_product.product_id = fact_orders.product_id
LEFT JOIN silver.dim_customer_history AS customer_then
  ON customer_then.customer_id = fact_orders.customer_id
  AND customer_then.valid_from <= fact_orders.ordered_at
  AND (customer_then.valid_to IS NULL OR fact_orders.ordered_at < customer_then.valid_to)
LEFT JOIN silver.dim_product_history AS product_then
  ON product_then.product_id = fact_orders.product_id
  AND product_then.valid_from <= fact_orders.ordered_at
  AND (product_then.valid_to IS NULL OR fact_orders.ordered_at < product_then.valid_to);

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
