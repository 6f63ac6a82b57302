-- Silver, by change data capture: each refresh applies the changes landed since the last one.
--
-- 1. silver.<table>_changes (customers, products, orders, order_items), a streaming table: the
--    change feed. Every version Bronze read, typed, once: the same row landed again (by the next
--    partition's lookback, or a re-extract of its day) is left out, so a version counts on the
--    ingestion date it first landed on. Deleted keys come as rows with _deleted true. _sequence
--    orders the changes: the later extract first, then updated_at. Ordering by extract is what the
--    source says: an extract reads ecomm-db as it stands at its snapshot, so a later extract holds
--    the newer truth even when an application wrote an older updated_at (a transaction stamps
--    now() when it begins, and may commit after one that began later). Each change of a customer,
--    product or order carries _failed_rules, the data contract rules it breaks.
-- 2. silver.customers, products, orders: AUTO CDC (SCD type 1) of the change feed: the latest
--    version of each key, a deleted key removed, with the rules it breaks; one expectation per
--    rule counts them (the Dagster asset checks). A row whose key does not parse is told apart by
--    its values (_row_key): each distinct one is kept, to be quarantined by valid_id.
-- 3. silver.order_items: an order line's rules depend on its order, customer and product too
--    (valid_reference), so the latest lines (silver.order_items_latest, AUTO CDC) get their rules
--    in a materialized view.
-- 4. The star schema takes the rows that break no rule; silver.<table>_quarantine keeps the others,
--    with the rules they broke and the file and ingestion date they came from. A quarantined row
--    counts nowhere downstream, and an order line whose order, customer or product is quarantined
--    or missing is quarantined itself (valid_reference).
-- 5. History, AUTO CDC (SCD type 2) of the same change feeds: silver.<table>_history holds one row
--    per version (__START_AT, __END_AT: the _sequence it began and ended at), and the views
--    silver.dim_customer_history, silver.dim_product_history and silver.order_status_history give
--    each version a surrogate key and its validity in time. History has the grain of the extract:
--    changes of a key between two extracts collapse into the last.
--
-- Normalisations, the same on every engine:
--   - every text column is trimmed; email is lower-cased; status is compared after lower(trim());
--   - an empty string stays an empty string (only an empty CSV field, PostgreSQL's NULL, is NULL);
--   - numbers and timestamps that do not parse become NULL (try_cast), so a rule catches them;
--   - timestamps are UTC instants; order_date is the date of ordered_at in Asia/Bangkok;
--   - a quantity must be positive (valid_quantity); a price may be zero, not negative (valid_price).
--
-- silver.source_reconciliation checks the latest versions against the key snapshot, day by day;
-- silver.star_key_violations, silver.row_accounting and silver.history_violations stop an update
-- that would break a key of the star, leave a row in neither the star nor quarantine, or break the
-- shape of a history.

-- conformed dimensions ------------------------------------------------------------------------------

CREATE OR REFRESH MATERIALIZED VIEW silver.dim_date
COMMENT 'One row per day from 2020 to 2030: the calendar of order_date (Asia/Bangkok) with ISO week, quarter, weekday, weekend and Thai public holidays: those on a fixed date, and the Buddhist holidays on lunar dates (Makha Bucha, Visakha Bucha, Asarnha Bucha, Buddhist Lent Day) as the Thai lunisolar calendar places them. Substitution days (a holiday on a weekend moved to a weekday) are declared by the cabinet each year and are not listed.'
AS WITH fixed AS (
  SELECT * FROM VALUES
    (1, 1, 'New Year\'s Day'),
    (4, 6, 'Chakri Memorial Day'),
    (4, 13, 'Songkran Festival'),
    (4, 14, 'Songkran Festival'),
    (4, 15, 'Songkran Festival'),
    (5, 1, 'National Labour Day'),
    (5, 4, 'Coronation Day'),
    (6, 3, 'Queen Suthida\'s Birthday'),
    (7, 28, 'King Vajiralongkorn\'s Birthday'),
    (8, 12, 'Mother\'s Day'),
    (10, 13, 'King Bhumibol Memorial Day'),
    (10, 23, 'Chulalongkorn Day'),
    (12, 5, 'Father\'s Day'),
    (12, 10, 'Constitution Day'),
    (12, 31, 'New Year\'s Eve')
    AS fixed(month, day, holiday_name)
), lunar AS (
  -- The full moon of the 3rd, 6th and 8th lunar months and the day after the last, 2020-2030, as
  -- the Thai lunisolar calendar places them (computed with the holidays package, which checks them
  -- against the Bank of Thailand's lists; ecomm_assets_tests/test_lakehouse_engine.py compares).
  SELECT * FROM VALUES
    (DATE'2020-02-08', 'Makha Bucha'),
    (DATE'2020-05-06', 'Visakha Bucha'),
    (DATE'2020-07-05', 'Asarnha Bucha'),
    (DATE'2020-07-06', 'Buddhist Lent Day'),
    (DATE'2021-02-26', 'Makha Bucha'),
    (DATE'2021-05-26', 'Visakha Bucha'),
    (DATE'2021-07-24', 'Asarnha Bucha'),
    (DATE'2021-07-25', 'Buddhist Lent Day'),
    (DATE'2022-02-16', 'Makha Bucha'),
    (DATE'2022-05-15', 'Visakha Bucha'),
    (DATE'2022-07-13', 'Asarnha Bucha'),
    (DATE'2022-07-14', 'Buddhist Lent Day'),
    (DATE'2023-03-06', 'Makha Bucha'),
    (DATE'2023-06-03', 'Visakha Bucha'),
    (DATE'2023-08-01', 'Asarnha Bucha'),
    (DATE'2023-08-02', 'Buddhist Lent Day'),
    (DATE'2024-02-24', 'Makha Bucha'),
    (DATE'2024-05-22', 'Visakha Bucha'),
    (DATE'2024-07-20', 'Asarnha Bucha'),
    (DATE'2024-07-21', 'Buddhist Lent Day'),
    (DATE'2025-02-12', 'Makha Bucha'),
    (DATE'2025-05-11', 'Visakha Bucha'),
    (DATE'2025-07-10', 'Asarnha Bucha'),
    (DATE'2025-07-11', 'Buddhist Lent Day'),
    (DATE'2026-03-03', 'Makha Bucha'),
    (DATE'2026-05-31', 'Visakha Bucha'),
    (DATE'2026-07-29', 'Asarnha Bucha'),
    (DATE'2026-07-30', 'Buddhist Lent Day'),
    (DATE'2027-02-21', 'Makha Bucha'),
    (DATE'2027-05-20', 'Visakha Bucha'),
    (DATE'2027-07-18', 'Asarnha Bucha'),
    (DATE'2027-07-19', 'Buddhist Lent Day'),
    (DATE'2028-02-10', 'Makha Bucha'),
    (DATE'2028-05-08', 'Visakha Bucha'),
    (DATE'2028-07-06', 'Asarnha Bucha'),
    (DATE'2028-07-07', 'Buddhist Lent Day'),
    (DATE'2029-02-27', 'Makha Bucha'),
    (DATE'2029-05-27', 'Visakha Bucha'),
    (DATE'2029-07-25', 'Asarnha Bucha'),
    (DATE'2029-07-26', 'Buddhist Lent Day'),
    (DATE'2030-02-17', 'Makha Bucha'),
    (DATE'2030-05-16', 'Visakha Bucha'),
    (DATE'2030-07-14', 'Asarnha Bucha'),
    (DATE'2030-07-15', 'Buddhist Lent Day')
    AS lunar(holiday_date, holiday_name)
), days AS (
  SELECT CAST(day AS DATE) AS day
  FROM (SELECT explode(sequence(DATE'2020-01-01', DATE'2030-12-31', INTERVAL 1 DAY)) AS day)
), holidays AS (
  SELECT days.day, fixed.holiday_name
  FROM days JOIN fixed ON fixed.month = month(days.day) AND fixed.day = day(days.day)
  UNION ALL
  SELECT holiday_date, holiday_name FROM lunar
), named AS (  -- two holidays may fall on one day (Visakha Bucha on the Queen's birthday in 2023)
  SELECT day, array_join(sort_array(collect_list(holiday_name)), '; ') AS holiday_name
  FROM holidays
  GROUP BY day
)
SELECT
  days.day AS date_key,  -- The day: what order_date joins on.
  year(days.day) AS year,  -- The calendar year.
  quarter(days.day) AS quarter,  -- 1-4.
  month(days.day) AS month,  -- 1-12.
  date_format(days.day, 'MMMM') AS month_name,  -- January ... December.
  extract(YEAROFWEEK FROM days.day) AS iso_year,  -- The ISO 8601 week-numbering year.
  weekofyear(days.day) AS iso_week,  -- The ISO 8601 week, 1-53.
  datediff(days.day, DATE'2000-01-03') % 7 + 1 AS iso_day_of_week,  -- 1 (Monday) to 7 (Sunday).
  date_format(days.day, 'EEEE') AS weekday_name,  -- Monday ... Sunday.
  datediff(days.day, DATE'2000-01-03') % 7 >= 5 AS is_weekend,  -- Saturday or Sunday.
  named.holiday_name,  -- The Thai public holiday(s) on the day ('; ' between two), or NULL.
  named.holiday_name IS NOT NULL AS is_public_holiday  -- A Thai public holiday (substitution days not included).
FROM days
LEFT JOIN named ON named.day = days.day;

-- customers -----------------------------------------------------------------------------------------

CREATE OR REFRESH STREAMING TABLE silver.customers_changes (
  CONSTRAINT not_future_dated EXPECT (NOT coalesce(updated_at > _extracted_at, false))
)
COMMENT 'The customers change feed: every version landed, typed, once, and every customer_id deleted from ecomm-db. not_future_dated warns of a version dated after the extract that read it (a clock ahead): it is applied all the same.'
AS SELECT
  coalesce(CAST(try_cast(landed.customer_id AS BIGINT) AS STRING), concat('unkeyed:', md5(to_json(array(
    landed.customer_id, landed.first_name, landed.last_name, landed.email, landed.city, landed.country,
    landed.created_at, landed.updated_at))))) AS _row_key,  -- How Silver tells rows apart: the key, or for a row whose key does not parse, a hash of its values.
  try_cast(landed.customer_id AS BIGINT) AS customer_id,
  trim(landed.first_name) AS first_name,
  trim(landed.last_name) AS last_name,
  lower(trim(landed.email)) AS email,
  trim(landed.city) AS city,
  trim(landed.country) AS country,
  try_cast(landed.created_at AS TIMESTAMP) AS created_at,
  try_cast(landed.updated_at AS TIMESTAMP) AS updated_at,
  filter(array(
    if(try_cast(landed.customer_id AS BIGINT) IS NOT NULL, NULL, 'valid_id')
  ), rule -> rule IS NOT NULL) AS _failed_rules,  -- The data contract rules the row breaks (empty: none).
  landed._deleted IS NOT NULL AS _deleted,  -- The key was deleted from ecomm-db (updated_at: when the extract saw it gone).
  named_struct('extracted_at', landed._extracted_at, 'updated_at', try_cast(landed.updated_at AS TIMESTAMP)) AS _sequence,  -- The order changes are applied in: the later extract first, then updated_at.
  landed._extracted_at,
  landed._ingestion_date,
  landed._source_file,
  current_timestamp() AS _processed_at  -- When Silver took the change.
FROM STREAM(bronze.customers) AS landed
LEFT ANTI JOIN bronze.customers AS earlier
  ON earlier.customer_id <=> landed.customer_id AND earlier.first_name <=> landed.first_name
  AND earlier.last_name <=> landed.last_name AND earlier.email <=> landed.email AND earlier.city <=> landed.city
  AND earlier.country <=> landed.country AND earlier.created_at <=> landed.created_at
  AND earlier.updated_at <=> landed.updated_at AND earlier._deleted <=> landed._deleted
  AND (earlier._extracted_at < landed._extracted_at
       OR (earlier._extracted_at = landed._extracted_at AND earlier._ingestion_date < landed._ingestion_date))
-- a landed file in no partition stays in Bronze (bronze.unplaced_files)
WHERE landed._ingestion_date IS NOT NULL AND landed._extracted_at IS NOT NULL;

CREATE OR REFRESH STREAMING TABLE silver.customers (
  CONSTRAINT valid_id EXPECT (NOT array_contains(_failed_rules, 'valid_id'))
)
COMMENT 'Every customer in ecomm-db at the latest extract, typed, in the version the source had then (AUTO CDC, SCD type 1), with the rules it breaks; a deleted customer is gone.';

CREATE FLOW customers AS AUTO CDC INTO silver.customers
FROM STREAM(silver.customers_changes)
KEYS (_row_key)
APPLY AS DELETE WHEN _deleted
SEQUENCE BY _sequence
COLUMNS * EXCEPT (_deleted, _sequence)
STORED AS SCD TYPE 1;

CREATE OR REFRESH STREAMING TABLE silver.customers_history
COMMENT 'Every version of each customer (AUTO CDC, SCD type 2 on name, email, city and country): __START_AT and __END_AT are the _sequence it began and ended at; a deleted customer''s last version is closed.';

CREATE FLOW customers_history AS AUTO CDC INTO silver.customers_history
FROM STREAM(silver.customers_changes)
KEYS (_row_key)
APPLY AS DELETE WHEN _deleted
SEQUENCE BY _sequence
COLUMNS * EXCEPT (_deleted, _sequence)
STORED AS SCD TYPE 2
TRACK HISTORY ON (first_name, last_name, email, city, country);

CREATE VIEW silver.dim_customer
COMMENT 'Clean customer profile: the current version of each customer that breaks no rule.'
AS SELECT customer_id, first_name, last_name, email, city, country, created_at, updated_at, _processed_at
FROM silver.customers
WHERE size(_failed_rules) = 0;

CREATE VIEW silver.customers_quarantine
COMMENT 'The rows of silver.customers that break a rule and reach no star table: each with the rules it broke (_failed_rules), the landed file and the ingestion date it came from.'
AS SELECT * FROM silver.customers WHERE size(_failed_rules) > 0;

-- products ------------------------------------------------------------------------------------------

CREATE OR REFRESH STREAMING TABLE silver.products_changes (
  CONSTRAINT not_future_dated EXPECT (NOT coalesce(updated_at > _extracted_at, false))
)
COMMENT 'The products change feed: every version landed, typed, once, and every product_id deleted from ecomm-db. not_future_dated warns of a version dated after the extract that read it (a clock ahead): it is applied all the same.'
AS SELECT
  coalesce(CAST(try_cast(landed.product_id AS BIGINT) AS STRING), concat('unkeyed:', md5(to_json(array(
    landed.product_id, landed.product_name, landed.category, landed.unit_price, landed.created_at,
    landed.updated_at))))) AS _row_key,
  try_cast(landed.product_id AS BIGINT) AS product_id,
  trim(landed.product_name) AS product_name,
  trim(landed.category) AS category,
  try_cast(landed.unit_price AS DECIMAL(12, 2)) AS unit_price,
  try_cast(landed.created_at AS TIMESTAMP) AS created_at,
  try_cast(landed.updated_at AS TIMESTAMP) AS updated_at,
  filter(array(
    if(try_cast(landed.product_id AS BIGINT) IS NOT NULL, NULL, 'valid_id'),
    if(try_cast(landed.unit_price AS DECIMAL(12, 2)) >= 0, NULL, 'valid_price')
  ), rule -> rule IS NOT NULL) AS _failed_rules,
  landed._deleted IS NOT NULL AS _deleted,
  named_struct('extracted_at', landed._extracted_at, 'updated_at', try_cast(landed.updated_at AS TIMESTAMP)) AS _sequence,
  landed._extracted_at,
  landed._ingestion_date,
  landed._source_file,
  current_timestamp() AS _processed_at
FROM STREAM(bronze.products) AS landed
LEFT ANTI JOIN bronze.products AS earlier
  ON earlier.product_id <=> landed.product_id AND earlier.product_name <=> landed.product_name
  AND earlier.category <=> landed.category AND earlier.unit_price <=> landed.unit_price
  AND earlier.created_at <=> landed.created_at AND earlier.updated_at <=> landed.updated_at
  AND earlier._deleted <=> landed._deleted
  AND (earlier._extracted_at < landed._extracted_at
       OR (earlier._extracted_at = landed._extracted_at AND earlier._ingestion_date < landed._ingestion_date))
-- a landed file in no partition stays in Bronze (bronze.unplaced_files)
WHERE landed._ingestion_date IS NOT NULL AND landed._extracted_at IS NOT NULL;

CREATE OR REFRESH STREAMING TABLE silver.products (
  CONSTRAINT valid_id EXPECT (NOT array_contains(_failed_rules, 'valid_id')),
  CONSTRAINT valid_price EXPECT (NOT array_contains(_failed_rules, 'valid_price'))
)
COMMENT 'Every product in ecomm-db at the latest extract, typed, in the version the source had then (AUTO CDC, SCD type 1), with the rules it breaks; a deleted product is gone.';

CREATE FLOW products AS AUTO CDC INTO silver.products
FROM STREAM(silver.products_changes)
KEYS (_row_key)
APPLY AS DELETE WHEN _deleted
SEQUENCE BY _sequence
COLUMNS * EXCEPT (_deleted, _sequence)
STORED AS SCD TYPE 1;

CREATE OR REFRESH STREAMING TABLE silver.products_history
COMMENT 'Every version of each product (AUTO CDC, SCD type 2 on name, category and list price): __START_AT and __END_AT are the _sequence it began and ended at; a deleted product''s last version is closed.';

CREATE FLOW products_history AS AUTO CDC INTO silver.products_history
FROM STREAM(silver.products_changes)
KEYS (_row_key)
APPLY AS DELETE WHEN _deleted
SEQUENCE BY _sequence
COLUMNS * EXCEPT (_deleted, _sequence)
STORED AS SCD TYPE 2
TRACK HISTORY ON (product_name, category, unit_price);

CREATE VIEW silver.dim_product
COMMENT 'Product details: the current name, category and list price of each product that breaks no rule.'
AS SELECT product_id, product_name, category, unit_price, created_at, updated_at, _processed_at
FROM silver.products
WHERE size(_failed_rules) = 0;

CREATE VIEW silver.products_quarantine
COMMENT 'The rows of silver.products that break a rule and reach no star table: each with the rules it broke (_failed_rules), the landed file and the ingestion date it came from.'
AS SELECT * FROM silver.products WHERE size(_failed_rules) > 0;

-- orders --------------------------------------------------------------------------------------------

CREATE OR REFRESH MATERIALIZED VIEW silver.dim_payment_method
COMMENT 'The payment methods the shop accepts, each with its type, and the member unknown for an order whose method the shop does not list (or that has none).'
AS SELECT
  payment_method,
  method_name,  -- The method as the shop names it to customers.
  method_type  -- card, qr_payment, bank_transfer, cash or unknown.
FROM VALUES
  ('credit_card', 'Credit card', 'card'),
  ('debit_card', 'Debit card', 'card'),
  ('promptpay', 'PromptPay', 'qr_payment'),
  ('bank_transfer', 'Bank transfer', 'bank_transfer'),
  ('cash_on_delivery', 'Cash on delivery', 'cash'),
  ('unknown', 'Unknown', 'unknown')
  AS methods(payment_method, method_name, method_type);

CREATE OR REFRESH STREAMING TABLE silver.orders_changes (
  CONSTRAINT not_future_dated EXPECT (NOT coalesce(updated_at > _extracted_at, false)),
  CONSTRAINT valid_payment_method EXPECT (_deleted OR payment_method_key <> 'unknown')
)
COMMENT 'The orders change feed: every version landed, typed, once, and every order_id deleted from ecomm-db. not_future_dated warns of a version dated after the extract that read it (a clock ahead): it is applied all the same.'
AS SELECT
  coalesce(CAST(try_cast(landed.order_id AS BIGINT) AS STRING), concat('unkeyed:', md5(to_json(array(
    landed.order_id, landed.customer_id, landed.ordered_at, landed.status, landed.payment_method,
    landed.created_at, landed.updated_at))))) AS _row_key,
  try_cast(landed.order_id AS BIGINT) AS order_id,
  try_cast(landed.customer_id AS BIGINT) AS customer_id,
  try_cast(landed.ordered_at AS TIMESTAMP) AS ordered_at,
  lower(trim(landed.status)) AS status,
  trim(landed.payment_method) AS payment_method,
  coalesce(accepted.payment_method, 'unknown') AS payment_method_key,  -- Its silver.dim_payment_method member: unknown for a method the shop does not accept.
  try_cast(landed.created_at AS TIMESTAMP) AS created_at,
  try_cast(landed.updated_at AS TIMESTAMP) AS updated_at,
  filter(array(
    if(try_cast(landed.order_id AS BIGINT) IS NOT NULL AND try_cast(landed.customer_id AS BIGINT) IS NOT NULL
       AND try_cast(landed.ordered_at AS TIMESTAMP) IS NOT NULL, NULL, 'valid_id'),
    if(lower(trim(landed.status)) IN ('shipped', 'delivered', 'cancelled', 'pending'), NULL, 'valid_status')
  ), rule -> rule IS NOT NULL) AS _failed_rules,
  landed._deleted IS NOT NULL AS _deleted,
  named_struct('extracted_at', landed._extracted_at, 'updated_at', try_cast(landed.updated_at AS TIMESTAMP)) AS _sequence,
  landed._extracted_at,
  landed._ingestion_date,
  landed._source_file,
  current_timestamp() AS _processed_at
FROM STREAM(bronze.orders) AS landed
LEFT JOIN silver.dim_payment_method AS accepted
  ON accepted.payment_method = lower(trim(landed.payment_method)) AND accepted.payment_method <> 'unknown'
LEFT ANTI JOIN bronze.orders AS earlier
  ON earlier.order_id <=> landed.order_id AND earlier.customer_id <=> landed.customer_id
  AND earlier.ordered_at <=> landed.ordered_at AND earlier.status <=> landed.status
  AND earlier.payment_method <=> landed.payment_method AND earlier.created_at <=> landed.created_at
  AND earlier.updated_at <=> landed.updated_at AND earlier._deleted <=> landed._deleted
  AND (earlier._extracted_at < landed._extracted_at
       OR (earlier._extracted_at = landed._extracted_at AND earlier._ingestion_date < landed._ingestion_date))
-- a landed file in no partition stays in Bronze (bronze.unplaced_files)
WHERE landed._ingestion_date IS NOT NULL AND landed._extracted_at IS NOT NULL;

CREATE OR REFRESH STREAMING TABLE silver.orders (
  CONSTRAINT valid_id EXPECT (NOT array_contains(_failed_rules, 'valid_id')),
  CONSTRAINT valid_status EXPECT (NOT array_contains(_failed_rules, 'valid_status'))
)
COMMENT 'Every order in ecomm-db at the latest extract, typed, in the version the source had then (AUTO CDC, SCD type 1), with the rules it breaks; a deleted order is gone.';

CREATE FLOW orders AS AUTO CDC INTO silver.orders
FROM STREAM(silver.orders_changes)
KEYS (_row_key)
APPLY AS DELETE WHEN _deleted
SEQUENCE BY _sequence
COLUMNS * EXCEPT (_deleted, _sequence)
STORED AS SCD TYPE 1;

CREATE OR REFRESH STREAMING TABLE silver.orders_history
COMMENT 'Every status of each order (AUTO CDC, SCD type 2 on status): __START_AT and __END_AT are the _sequence it began and ended at; a deleted order''s last status is closed.';

CREATE FLOW orders_history AS AUTO CDC INTO silver.orders_history
FROM STREAM(silver.orders_changes)
KEYS (_row_key)
APPLY AS DELETE WHEN _deleted
SEQUENCE BY _sequence
COLUMNS * EXCEPT (_deleted, _sequence)
STORED AS SCD TYPE 2
TRACK HISTORY ON (status);

CREATE VIEW silver.dim_orders
COMMENT 'Order details: the current status and payment method of each order that breaks no rule, and its order_date in Asia/Bangkok.'
AS SELECT
  order_id,
  customer_id,
  ordered_at,
  to_date(from_utc_timestamp(ordered_at, 'Asia/Bangkok')) AS order_date,  -- The day the order was placed, in Asia/Bangkok.
  status,
  payment_method,
  payment_method_key,
  created_at,
  updated_at,
  _processed_at
FROM silver.orders
WHERE size(_failed_rules) = 0;

CREATE VIEW silver.orders_quarantine
COMMENT 'The rows of silver.orders that break a rule and reach no star table: each with the rules it broke (_failed_rules), the landed file and the ingestion date it came from.'
AS SELECT * FROM silver.orders WHERE size(_failed_rules) > 0;

-- order lines ---------------------------------------------------------------------------------------

CREATE OR REFRESH STREAMING TABLE silver.order_items_changes (
  CONSTRAINT not_future_dated EXPECT (NOT coalesce(updated_at > _extracted_at, false))
)
COMMENT 'The order_items change feed: every version landed, typed, once, and every order_item_id deleted from ecomm-db. not_future_dated warns of a version dated after the extract that read it (a clock ahead): it is applied all the same.'
AS SELECT
  coalesce(CAST(try_cast(landed.order_item_id AS BIGINT) AS STRING), concat('unkeyed:', md5(to_json(array(
    landed.order_item_id, landed.order_id, landed.product_id, landed.quantity, landed.item_price,
    landed.created_at, landed.updated_at))))) AS _row_key,
  try_cast(landed.order_item_id AS BIGINT) AS order_item_id,
  try_cast(landed.order_id AS BIGINT) AS order_id,
  try_cast(landed.product_id AS BIGINT) AS product_id,
  try_cast(landed.quantity AS INT) AS quantity,
  try_cast(landed.item_price AS DECIMAL(12, 2)) AS item_price,
  try_cast(landed.created_at AS TIMESTAMP) AS created_at,
  try_cast(landed.updated_at AS TIMESTAMP) AS updated_at,
  landed._deleted IS NOT NULL AS _deleted,
  named_struct('extracted_at', landed._extracted_at, 'updated_at', try_cast(landed.updated_at AS TIMESTAMP)) AS _sequence,
  landed._extracted_at,
  landed._ingestion_date,
  landed._source_file,
  current_timestamp() AS _processed_at
FROM STREAM(bronze.order_items) AS landed
LEFT ANTI JOIN bronze.order_items AS earlier
  ON earlier.order_item_id <=> landed.order_item_id AND earlier.order_id <=> landed.order_id
  AND earlier.product_id <=> landed.product_id AND earlier.quantity <=> landed.quantity
  AND earlier.item_price <=> landed.item_price AND earlier.created_at <=> landed.created_at
  AND earlier.updated_at <=> landed.updated_at AND earlier._deleted <=> landed._deleted
  AND (earlier._extracted_at < landed._extracted_at
       OR (earlier._extracted_at = landed._extracted_at AND earlier._ingestion_date < landed._ingestion_date))
-- a landed file in no partition stays in Bronze (bronze.unplaced_files)
WHERE landed._ingestion_date IS NOT NULL AND landed._extracted_at IS NOT NULL;

CREATE OR REFRESH STREAMING TABLE silver.order_items_latest
COMMENT 'The latest version of each order line (AUTO CDC, SCD type 1), typed; a deleted line is gone.';

CREATE FLOW order_items_latest AS AUTO CDC INTO silver.order_items_latest
FROM STREAM(silver.order_items_changes)
KEYS (_row_key)
APPLY AS DELETE WHEN _deleted
SEQUENCE BY _sequence
COLUMNS * EXCEPT (_deleted, _sequence)
STORED AS SCD TYPE 1;

CREATE OR REFRESH MATERIALIZED VIEW silver.order_items (
  CONSTRAINT valid_id EXPECT (NOT array_contains(_failed_rules, 'valid_id')),
  CONSTRAINT valid_reference EXPECT (NOT array_contains(_failed_rules, 'valid_reference')),
  CONSTRAINT valid_price EXPECT (NOT array_contains(_failed_rules, 'valid_price')),
  CONSTRAINT valid_quantity EXPECT (NOT array_contains(_failed_rules, 'valid_quantity'))
)
COMMENT 'Every order line in ecomm-db at the latest extract, typed, in the version the source had then, with the rules it breaks. valid_reference: its order (with that order''s customer) and its product are in the star schema.'
AS SELECT
  order_items_latest.*,
  filter(array(
    if(order_items_latest.order_item_id IS NOT NULL, NULL, 'valid_id'),
    if(dim_orders.order_id IS NOT NULL AND dim_customer.customer_id IS NOT NULL
       AND dim_product.product_id IS NOT NULL, NULL, 'valid_reference'),
    if(order_items_latest.item_price >= 0, NULL, 'valid_price'),
    if(order_items_latest.quantity > 0, NULL, 'valid_quantity')
  ), rule -> rule IS NOT NULL) AS _failed_rules
FROM silver.order_items_latest
LEFT JOIN silver.dim_orders ON dim_orders.order_id = order_items_latest.order_id
LEFT JOIN silver.dim_customer ON dim_customer.customer_id = dim_orders.customer_id
LEFT JOIN silver.dim_product ON dim_product.product_id = order_items_latest.product_id;

CREATE VIEW silver.fact_orders
COMMENT 'Sales fact, one row per order line that breaks no rule: the current version of each line with its order date, customer and product.'
AS SELECT
  order_items.order_item_id,
  order_items.order_id,
  dim_orders.customer_id,
  order_items.product_id,
  dim_orders.order_date,
  dim_orders.ordered_at,
  order_items.quantity,
  order_items.item_price,
  order_items.updated_at,
  order_items._processed_at
FROM silver.order_items
JOIN silver.dim_orders ON dim_orders.order_id = order_items.order_id
WHERE size(order_items._failed_rules) = 0;

CREATE VIEW silver.order_items_quarantine
COMMENT 'The rows of silver.order_items that break a rule and reach no star table: each with the rules it broke (_failed_rules), the landed file and the ingestion date it came from.'
AS SELECT * FROM silver.order_items WHERE size(_failed_rules) > 0;

-- history -------------------------------------------------------------------------------------------
-- A version is valid from its updated_at (a key's first known version: from when the key was
-- created, the versions before the first extract being unknown) until the next version begins, or
-- until the extract that saw the key deleted. Versions are ordered by _sequence; valid_from never
-- goes back in time (a version an application back-dated begins where the one before it began), so
-- the intervals of a key follow each other without gap or overlap, and exactly one holds at any
-- instant from the key's creation on. The surrogate key is a hash of the key, the updated_at the
-- version began with and the tracked columns: the same on every engine, every refresh, and every
-- pipeline that landed the same versions.

CREATE VIEW silver.dim_customer_history
COMMENT 'Every version of each customer with its surrogate key and validity: join on customer_id and valid_from <= t < valid_to (valid_to NULL: still valid) for the customer as at instant t.'
AS WITH ordered AS (
  SELECT *, row_number() OVER (PARTITION BY customer_id ORDER BY __START_AT) = 1 AS first_version
  FROM silver.customers_history
  WHERE customer_id IS NOT NULL
), versions AS (
  SELECT
    *,
    max(if(first_version, least(created_at, __START_AT.updated_at), __START_AT.updated_at)) OVER (
      PARTITION BY customer_id ORDER BY __START_AT ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS valid_from
  FROM ordered
)
SELECT
  md5(to_json(array(CAST(customer_id AS STRING), CAST(unix_micros(__START_AT.updated_at) AS STRING),
                    first_name, last_name, email, city, country))) AS customer_sk,  -- The version's surrogate key: a hash of the key, when the version began and what it holds.
  customer_id, first_name, last_name, email, city, country, created_at, updated_at,
  valid_from,  -- When the version began to hold (UTC).
  if(__END_AT IS NULL, NULL, coalesce(lead(valid_from) OVER (PARTITION BY customer_id ORDER BY __START_AT),
                                     greatest(__END_AT.updated_at, valid_from))) AS valid_to,  -- When the next version began, or when the key was seen deleted (UTC); NULL while it holds.
  __END_AT IS NULL AS is_current,  -- The version holds now.
  _ingestion_date,
  _source_file
FROM versions;

CREATE VIEW silver.dim_product_history
COMMENT 'Every version of each product (name, category, list price) with its surrogate key and validity: join on product_id and valid_from <= t < valid_to (valid_to NULL: still valid) for the product as at instant t.'
AS WITH ordered AS (
  SELECT *, row_number() OVER (PARTITION BY product_id ORDER BY __START_AT) = 1 AS first_version
  FROM silver.products_history
  WHERE product_id IS NOT NULL
), versions AS (
  SELECT
    *,
    max(if(first_version, least(created_at, __START_AT.updated_at), __START_AT.updated_at)) OVER (
      PARTITION BY product_id ORDER BY __START_AT ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS valid_from
  FROM ordered
)
SELECT
  md5(to_json(array(CAST(product_id AS STRING), CAST(unix_micros(__START_AT.updated_at) AS STRING),
                    product_name, category, CAST(unit_price AS STRING)))) AS product_sk,  -- The version's surrogate key: a hash of the key, when the version began and what it holds.
  product_id, product_name, category, unit_price, created_at, updated_at,
  valid_from,
  if(__END_AT IS NULL, NULL, coalesce(lead(valid_from) OVER (PARTITION BY product_id ORDER BY __START_AT),
                                     greatest(__END_AT.updated_at, valid_from))) AS valid_to,
  __END_AT IS NULL AS is_current,
  _ingestion_date,
  _source_file
FROM versions;

CREATE VIEW silver.order_status_history
COMMENT 'Every status each order went through, with when it began and ended (UTC): fulfilment time is the valid_from of delivered minus the order''s ordered_at. Statuses an order passed through between two extracts are not seen.'
AS WITH ordered AS (
  SELECT *, row_number() OVER (PARTITION BY order_id ORDER BY __START_AT) = 1 AS first_version
  FROM silver.orders_history
  WHERE order_id IS NOT NULL
), versions AS (
  SELECT
    *,
    max(if(first_version, least(created_at, __START_AT.updated_at), __START_AT.updated_at)) OVER (
      PARTITION BY order_id ORDER BY __START_AT ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS valid_from
  FROM ordered
)
SELECT
  order_id, status, ordered_at,
  valid_from,
  if(__END_AT IS NULL, NULL, coalesce(lead(valid_from) OVER (PARTITION BY order_id ORDER BY __START_AT),
                                     greatest(__END_AT.updated_at, valid_from))) AS valid_to,
  __END_AT IS NULL AS is_current,
  _ingestion_date,
  _source_file
FROM versions;

-- checks --------------------------------------------------------------------------------------------

CREATE OR REFRESH MATERIALIZED VIEW silver.source_reconciliation (
  CONSTRAINT in_sync EXPECT (silver_rows = source_rows)
)
COMMENT 'Silver against ecomm-db, per day of updated_at (Asia/Bangkok) and source table: source_rows are the versions the source had at the latest extract (the key snapshot), silver_rows those of them Silver holds. A day out of sync lost a change on the way (committed later than the lookback, or never extracted): re-run the partition of that ingestion_date.'
AS WITH source_versions AS (
  SELECT 'customers' AS source_table, try_cast(customer_id AS BIGINT) AS id, try_cast(updated_at AS TIMESTAMP) AS updated_at
  FROM bronze.customers_keys
  UNION ALL
  SELECT 'products', try_cast(product_id AS BIGINT), try_cast(updated_at AS TIMESTAMP) FROM bronze.products_keys
  UNION ALL
  SELECT 'orders', try_cast(order_id AS BIGINT), try_cast(updated_at AS TIMESTAMP) FROM bronze.orders_keys
  UNION ALL
  SELECT 'order_items', try_cast(order_item_id AS BIGINT), try_cast(updated_at AS TIMESTAMP) FROM bronze.order_items_keys
), silver_versions AS (
  SELECT 'customers' AS source_table, customer_id AS id, updated_at FROM silver.customers
  UNION ALL
  SELECT 'products', product_id, updated_at FROM silver.products
  UNION ALL
  SELECT 'orders', order_id, updated_at FROM silver.orders
  UNION ALL
  SELECT 'order_items', order_item_id, updated_at FROM silver.order_items_latest
)
SELECT
  to_date(from_utc_timestamp(source.updated_at, 'Asia/Bangkok')) AS ingestion_date,  -- The day the versions were last changed.
  source.source_table,  -- The ecomm-db table.
  count(*) AS source_rows,  -- Versions the source had at the latest extract (key snapshot).
  count_if(silver.updated_at = source.updated_at) AS silver_rows  -- How many of them Silver holds.
FROM source_versions AS source
LEFT JOIN silver_versions AS silver ON silver.source_table = source.source_table AND silver.id = source.id
-- A row without a key cannot be matched: Silver keeps every one of them, quarantined (valid_id).
WHERE source.updated_at IS NOT NULL AND source.id IS NOT NULL
GROUP BY 1, 2;

CREATE OR REFRESH MATERIALIZED VIEW silver.star_key_violations (
  CONSTRAINT unique_keys EXPECT (key IS NOT NULL AND rows = 1) ON VIOLATION FAIL UPDATE
)
COMMENT 'The primary keys of the star schema that are NULL or not unique: empty, or the update fails.'
AS SELECT
  'dim_customer' AS star_table,  -- The star table.
  customer_id AS key,  -- Its primary key value.
  count(*) AS rows  -- The rows holding it.
FROM silver.dim_customer
GROUP BY customer_id HAVING customer_id IS NULL OR count(*) > 1
UNION ALL
SELECT 'dim_product', product_id, count(*) FROM silver.dim_product
   GROUP BY product_id HAVING product_id IS NULL OR count(*) > 1
UNION ALL
SELECT 'dim_orders', order_id, count(*) FROM silver.dim_orders
   GROUP BY order_id HAVING order_id IS NULL OR count(*) > 1
UNION ALL
SELECT 'fact_orders', order_item_id, count(*) FROM silver.fact_orders
   GROUP BY order_item_id HAVING order_item_id IS NULL OR count(*) > 1;

CREATE OR REFRESH MATERIALIZED VIEW silver.row_accounting (
  CONSTRAINT every_row_accounted EXPECT (silver_rows = star_rows + quarantined_rows) ON VIOLATION FAIL UPDATE
)
COMMENT 'Per source table, the rows of Silver against those of the star schema and of quarantine: each row is in exactly one of them, or the update fails. A row in neither would count nowhere downstream while every other check passed.'
AS SELECT
  'customers' AS source_table,  -- The source table.
  (SELECT count(*) FROM silver.customers) AS silver_rows,  -- Its rows in Silver.
  (SELECT count(*) FROM silver.dim_customer) AS star_rows,  -- Those in the star schema.
  (SELECT count(*) FROM silver.customers_quarantine) AS quarantined_rows  -- Those in quarantine.
UNION ALL
SELECT 'products', (SELECT count(*) FROM silver.products), (SELECT count(*) FROM silver.dim_product),
  (SELECT count(*) FROM silver.products_quarantine)
UNION ALL
SELECT 'orders', (SELECT count(*) FROM silver.orders), (SELECT count(*) FROM silver.dim_orders),
  (SELECT count(*) FROM silver.orders_quarantine)
UNION ALL
SELECT 'order_items', (SELECT count(*) FROM silver.order_items), (SELECT count(*) FROM silver.fact_orders),
  (SELECT count(*) FROM silver.order_items_quarantine);

CREATE OR REFRESH MATERIALIZED VIEW silver.history_violations (
  CONSTRAINT sound_history EXPECT (current_versions = expected_current_versions AND gaps = 0 AND overlapping = 0)
    ON VIOLATION FAIL UPDATE
)
COMMENT 'The keys whose history is not sound: a key Silver holds has exactly one current version, a deleted key none, and the versions of a key follow each other without gap or overlap. Empty, or the update fails.'
AS WITH versions AS (
  SELECT 'customers' AS history, customer_id AS key, valid_from, valid_to, is_current FROM silver.dim_customer_history
  UNION ALL
  SELECT 'products', product_id, valid_from, valid_to, is_current FROM silver.dim_product_history
  UNION ALL
  SELECT 'orders', order_id, valid_from, valid_to, is_current FROM silver.order_status_history
), chained AS (
  SELECT
    *,
    lag(valid_from) OVER (PARTITION BY history, key ORDER BY valid_from, valid_to NULLS LAST) AS previous_valid_from,
    lag(valid_to) OVER (PARTITION BY history, key ORDER BY valid_from, valid_to NULLS LAST) AS previous_valid_to
  FROM versions
), held AS (
  SELECT 'customers' AS history, customer_id AS key FROM silver.customers WHERE customer_id IS NOT NULL
  UNION ALL
  SELECT 'products', product_id FROM silver.products WHERE product_id IS NOT NULL
  UNION ALL
  SELECT 'orders', order_id FROM silver.orders WHERE order_id IS NOT NULL
), by_key AS (
  SELECT
    coalesce(chained.history, held.history) AS history,
    coalesce(chained.key, held.key) AS key,
    count_if(chained.is_current) AS current_versions,
    count(DISTINCT held.key) AS expected_current_versions,
    count_if(chained.previous_valid_to < chained.valid_from) AS gaps,
    count_if(chained.previous_valid_from IS NOT NULL
             AND coalesce(chained.previous_valid_to > chained.valid_from, true)) AS overlapping
  FROM chained
  FULL JOIN held ON held.history = chained.history AND held.key = chained.key
  GROUP BY 1, 2
)
SELECT
  history,  -- The history: customers, products or orders (statuses).
  key,  -- The key whose versions break the rule.
  current_versions,  -- Its versions that hold now.
  expected_current_versions,  -- 1 while Silver holds the key, 0 once it was deleted.
  gaps,  -- Versions that begin after the one before ended.
  overlapping  -- Versions that begin before the one before ended.
FROM by_key
WHERE current_versions <> expected_current_versions OR gaps > 0 OR overlapping > 0;

-- quality score -------------------------------------------------------------------------------------
-- One score per ingestion date, source table and dimension: 100 * (rows - failed_rows) / rows,
-- rounded half up to hundredths (100 when there is nothing to judge). What a dimension judges:
--   completeness          the versions ecomm-db had (key snapshot) that Silver holds (source_reconciliation)
--   validity              current rows that break a data contract rule or name a payment method the
--                         shop does not accept
--   referential_integrity current rows whose order, customer or product is not in the star schema
--   uniqueness            landed rows of a key that one extract already holds (a key twice in ecomm-db):
--                         every copy after the first fails
--   consistency           landed versions dated after the extract that read them, or changed before created
-- The overall score weighs them completeness 30, validity 30, referential integrity 20, uniqueness 10
-- and consistency 10 (over the dimensions the day has), integers throughout so that every engine
-- rounds alike.

CREATE OR REFRESH MATERIALIZED VIEW silver.data_quality (
  CONSTRAINT quality_above_threshold EXPECT (dimension <> 'overall' OR score >= 95)
)
COMMENT 'Data quality score per ingestion date, source table and dimension (completeness, validity, referential_integrity, uniqueness, consistency), 0-100, and their weighted overall score. quality_above_threshold warns when a day''s overall score of a table is below 95.'
AS WITH current_rows AS (
  SELECT 'customers' AS source_table, _ingestion_date, size(_failed_rules) > 0 AS invalid, false AS unreferenced
  FROM silver.customers
  UNION ALL
  SELECT 'products', _ingestion_date, size(_failed_rules) > 0, false FROM silver.products
  UNION ALL
  SELECT 'orders', _ingestion_date, size(_failed_rules) > 0 OR payment_method_key = 'unknown', false FROM silver.orders
  UNION ALL
  SELECT 'order_items', _ingestion_date, size(filter(_failed_rules, rule -> rule <> 'valid_reference')) > 0,
    array_contains(_failed_rules, 'valid_reference')
  FROM silver.order_items
), landed_versions AS (
  SELECT 'customers' AS source_table, _ingestion_date, _source_file, _row_key, created_at, updated_at, _extracted_at
  FROM silver.customers_changes
  UNION ALL
  SELECT 'products', _ingestion_date, _source_file, _row_key, created_at, updated_at, _extracted_at
  FROM silver.products_changes
  UNION ALL
  SELECT 'orders', _ingestion_date, _source_file, _row_key, created_at, updated_at, _extracted_at
  FROM silver.orders_changes
  UNION ALL
  SELECT 'order_items', _ingestion_date, _source_file, _row_key, created_at, updated_at, _extracted_at
  FROM silver.order_items_changes
), counted_versions AS (
  SELECT *, row_number() OVER (PARTITION BY _source_file, _row_key ORDER BY updated_at) AS copy_number
  FROM landed_versions
), measured AS (
  SELECT ingestion_date AS _ingestion_date, source_table, 'completeness' AS dimension, source_rows AS rows,
    source_rows - silver_rows AS failed_rows
  FROM silver.source_reconciliation
  UNION ALL
  SELECT _ingestion_date, source_table, 'validity', count(*), count_if(invalid) FROM current_rows GROUP BY 1, 2
  UNION ALL
  SELECT _ingestion_date, source_table, 'referential_integrity', count(*), count_if(unreferenced)
  FROM current_rows GROUP BY 1, 2
  UNION ALL
  SELECT _ingestion_date, source_table, 'uniqueness', count(*), count_if(copy_number > 1) FROM counted_versions GROUP BY 1, 2
  UNION ALL
  SELECT _ingestion_date, source_table, 'consistency', count(*),
    count_if(coalesce(updated_at > _extracted_at OR created_at > updated_at, false))
  FROM landed_versions GROUP BY 1, 2
), scored AS (
  SELECT
    *,
    CASE WHEN rows = 0 THEN 10000 ELSE (20000 * (rows - failed_rows) + rows) DIV (2 * rows) END AS hundredths,
    CASE dimension WHEN 'completeness' THEN 30 WHEN 'validity' THEN 30 WHEN 'referential_integrity' THEN 20
      ELSE 10 END AS weight
  FROM measured
)
SELECT
  _ingestion_date,  -- The ingestion date judged.
  source_table,  -- The ecomm-db table.
  dimension,  -- completeness, validity, referential_integrity, uniqueness, consistency, or overall.
  rows,  -- The rows the dimension judged (NULL for overall).
  failed_rows,  -- Those that failed it (NULL for overall).
  CAST(hundredths * 0.01 AS DECIMAL(5, 2)) AS score  -- 0-100: the share of rows that passed; overall: the weighted mean.
FROM scored
UNION ALL
SELECT
  _ingestion_date, source_table, 'overall', CAST(NULL AS BIGINT), CAST(NULL AS BIGINT),
  CAST(((2 * sum(hundredths * weight) + sum(weight)) DIV (2 * sum(weight))) * 0.01 AS DECIMAL(5, 2))
FROM scored
GROUP BY 1, 2;
