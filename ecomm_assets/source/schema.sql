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

CREATE INDEX customers_updated_at ON customers (updated_at);
CREATE INDEX products_updated_at ON products (updated_at);
CREATE INDEX orders_updated_at ON orders (updated_at);
CREATE INDEX order_items_updated_at ON order_items (updated_at);
