-- Silver: the star schema. Each table keeps the latest version of every key (rows whose key
-- does not parse are all kept, so that valid_id drops and counts each one), casts the text of
-- Bronze to proper types, stamps _processed_at, and applies the expectations below. A row that
-- fails an expectation is dropped here and counts nowhere downstream; the count of each
-- expectation's failures is in the pipeline's event log (and in the Dagster asset checks).

CREATE OR REFRESH MATERIALIZED VIEW silver.dim_customer (
  CONSTRAINT valid_id EXPECT (customer_id IS NOT NULL) ON VIOLATION DROP ROW
)
COMMENT 'Clean customer profile: the current version of each customer.'
AS SELECT
  try_cast(customer_id AS BIGINT) AS customer_id,
  trim(first_name) AS first_name,
  trim(last_name) AS last_name,
  lower(trim(email)) AS email,
  trim(city) AS city,
  trim(country) AS country,
  try_cast(created_at AS TIMESTAMP) AS created_at,
  try_cast(updated_at AS TIMESTAMP) AS updated_at,
  current_timestamp() AS _processed_at
FROM bronze.customers
QUALIFY try_cast(customer_id AS BIGINT) IS NULL
  OR row_number() OVER (PARTITION BY try_cast(customer_id AS BIGINT)
                        ORDER BY try_cast(updated_at AS TIMESTAMP) DESC, _ingestion_date DESC) = 1;

CREATE OR REFRESH MATERIALIZED VIEW silver.dim_product (
  CONSTRAINT valid_id EXPECT (product_id IS NOT NULL) ON VIOLATION DROP ROW,
  CONSTRAINT valid_price EXPECT (unit_price >= 0) ON VIOLATION DROP ROW
)
COMMENT 'Product details: the current name, category and list price of each product.'
AS SELECT
  try_cast(product_id AS BIGINT) AS product_id,
  trim(product_name) AS product_name,
  trim(category) AS category,
  try_cast(unit_price AS DECIMAL(12, 2)) AS unit_price,
  try_cast(created_at AS TIMESTAMP) AS created_at,
  try_cast(updated_at AS TIMESTAMP) AS updated_at,
  current_timestamp() AS _processed_at
FROM bronze.products
QUALIFY try_cast(product_id AS BIGINT) IS NULL
  OR row_number() OVER (PARTITION BY try_cast(product_id AS BIGINT)
                        ORDER BY try_cast(updated_at AS TIMESTAMP) DESC, _ingestion_date DESC) = 1;

CREATE OR REFRESH MATERIALIZED VIEW silver.dim_orders (
  CONSTRAINT valid_id EXPECT (order_id IS NOT NULL AND customer_id IS NOT NULL AND ordered_at IS NOT NULL) ON VIOLATION DROP ROW,
  CONSTRAINT valid_status EXPECT (status IN ('shipped', 'delivered', 'cancelled', 'pending')) ON VIOLATION DROP ROW
)
COMMENT 'Order details: the current status and payment method of each order, and its order_date in Asia/Bangkok.'
AS SELECT
  try_cast(order_id AS BIGINT) AS order_id,
  try_cast(customer_id AS BIGINT) AS customer_id,
  try_cast(ordered_at AS TIMESTAMP) AS ordered_at,
  to_date(from_utc_timestamp(try_cast(ordered_at AS TIMESTAMP), 'Asia/Bangkok')) AS order_date,
  lower(trim(status)) AS status,
  trim(payment_method) AS payment_method,
  try_cast(created_at AS TIMESTAMP) AS created_at,
  try_cast(updated_at AS TIMESTAMP) AS updated_at,
  current_timestamp() AS _processed_at
FROM bronze.orders
QUALIFY try_cast(order_id AS BIGINT) IS NULL
  OR row_number() OVER (PARTITION BY try_cast(order_id AS BIGINT)
                        ORDER BY try_cast(updated_at AS TIMESTAMP) DESC, _ingestion_date DESC) = 1;

CREATE OR REFRESH MATERIALIZED VIEW silver.fact_orders (
  CONSTRAINT valid_id EXPECT (order_item_id IS NOT NULL AND order_id IS NOT NULL AND customer_id IS NOT NULL AND product_id IS NOT NULL) ON VIOLATION DROP ROW,
  CONSTRAINT valid_price EXPECT (item_price >= 0 AND quantity > 0) ON VIOLATION DROP ROW
)
COMMENT 'Sales fact, one row per order item: the current version of each line with its order, customer and product resolved. A line whose order, customer or product is missing or was dropped fails valid_id.'
AS WITH items AS (
  SELECT
    try_cast(order_item_id AS BIGINT) AS order_item_id,
    try_cast(order_id AS BIGINT) AS order_id,
    try_cast(product_id AS BIGINT) AS product_id,
    try_cast(quantity AS INT) AS quantity,
    try_cast(item_price AS DECIMAL(12, 2)) AS item_price,
    try_cast(updated_at AS TIMESTAMP) AS updated_at
  FROM bronze.order_items
  QUALIFY try_cast(order_item_id AS BIGINT) IS NULL
    OR row_number() OVER (PARTITION BY try_cast(order_item_id AS BIGINT)
                          ORDER BY try_cast(updated_at AS TIMESTAMP) DESC, _ingestion_date DESC) = 1
)
SELECT
  items.order_item_id,
  dim_orders.order_id,
  dim_customer.customer_id,
  dim_product.product_id,
  dim_orders.order_date,
  items.quantity,
  items.item_price,
  items.updated_at,
  current_timestamp() AS _processed_at
FROM items
LEFT JOIN silver.dim_orders ON dim_orders.order_id = items.order_id
LEFT JOIN silver.dim_customer ON dim_customer.customer_id = dim_orders.customer_id
LEFT JOIN silver.dim_product ON dim_product.product_id = items.product_id;
