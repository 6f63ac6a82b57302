-- ecomm-db: the OLTP source. Every table carries created_at / updated_at; updated_at is indexed
-- because the nightly extract reads a range of it.
CREATE TABLE customers (
    customer_id  bigint PRIMARY KEY,
    first_name   text NOT NULL,
    last_name    text NOT NULL,
    email        text NOT NULL,
    city         text NOT NULL,
    country      text NOT NULL,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL
);

CREATE TABLE products (
    product_id    bigint PRIMARY KEY,
    product_name  text NOT NULL,
    category      text NOT NULL,
    unit_price    numeric(12, 2) NOT NULL,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL
);

CREATE TABLE orders (
    order_id        bigint PRIMARY KEY,
    customer_id     bigint NOT NULL REFERENCES customers,
    ordered_at      timestamptz NOT NULL,
    status          text NOT NULL,
    payment_method  text NOT NULL,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL
);

CREATE TABLE order_items (
    order_item_id  bigint PRIMARY KEY,
    order_id       bigint NOT NULL REFERENCES orders,
    product_id     bigint NOT NULL REFERENCES products,
    quantity       integer NOT NULL,
    item_price     numeric(12, 2) NOT NULL,
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL
);

-- What each column means, once per column name: the pipeline shows it on every table that
-- carries the column (landing, Bronze, Silver, Gold).
COMMENT ON COLUMN customers.customer_id IS 'The customer (ecomm-db customers.customer_id).';
COMMENT ON COLUMN customers.first_name IS 'Given name, as the customer typed it.';
COMMENT ON COLUMN customers.last_name IS 'Family name, as the customer typed it.';
COMMENT ON COLUMN customers.email IS 'E-mail address (PII).';
COMMENT ON COLUMN customers.city IS 'City of the customer''s address.';
COMMENT ON COLUMN customers.country IS 'Country of the customer''s address.';
COMMENT ON COLUMN customers.created_at IS 'When the row was created in ecomm-db (UTC).';
COMMENT ON COLUMN customers.updated_at IS 'When the row last changed in ecomm-db (UTC): the nightly extract selects on it.';
COMMENT ON COLUMN products.product_id IS 'The product (ecomm-db products.product_id).';
COMMENT ON COLUMN products.product_name IS 'Name shown in the shop.';
COMMENT ON COLUMN products.category IS 'Shop category: the grain of Top Selling Categories.';
COMMENT ON COLUMN products.unit_price IS 'List price of one unit, in the shop''s currency.';
COMMENT ON COLUMN orders.order_id IS 'The order (ecomm-db orders.order_id).';
COMMENT ON COLUMN orders.ordered_at IS 'When the order was placed (UTC); its Asia/Bangkok date is order_date.';
COMMENT ON COLUMN orders.status IS 'shipped, delivered, cancelled or pending.';
COMMENT ON COLUMN orders.payment_method IS 'How the order was paid.';
COMMENT ON COLUMN order_items.order_item_id IS 'The order line (ecomm-db order_items.order_item_id).';
COMMENT ON COLUMN order_items.quantity IS 'Units of the product on the line.';
COMMENT ON COLUMN order_items.item_price IS 'Price of the line as charged, in the shop''s currency: revenue sums it.';

CREATE INDEX customers_updated_at ON customers (updated_at);
CREATE INDEX products_updated_at ON products (updated_at);
CREATE INDEX orders_updated_at ON orders (updated_at);
CREATE INDEX order_items_updated_at ON order_items (updated_at);
