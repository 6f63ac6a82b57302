"""The bad-input catalog: what ecomm-db may hold that the data contract forbids or that a CSV
file must quote, written into the small shop on 2026-03-03 (ICT). test_bad_inputs.py says what
becomes of each input; test_spark_parity.py runs them through Spark as well."""

CHANGED = "'2026-03-03 12:00+07'"

BAD_INPUTS = f"""
    -- room for the inputs the contract forbids, as a misconfigured or migrated source would give
    ALTER TABLE order_items DROP CONSTRAINT order_items_order_id_fkey, DROP CONSTRAINT order_items_product_id_fkey,
        ALTER COLUMN item_price TYPE text;
    ALTER TABLE orders DROP CONSTRAINT orders_pkey, ALTER COLUMN order_id DROP NOT NULL;
    ALTER TABLE customers ALTER COLUMN first_name DROP NOT NULL;
    ALTER TABLE products ADD COLUMN supplier text;

    INSERT INTO customers VALUES
      (900001, 'Anne, "Annie"', 'O''Brien \\ Smith', '  Anne.OBrien@Example.COM ', E'New\\nYork', E'United\\tStates', {CHANGED}, {CHANGED}),
      (900002, 'สมชาย 😀', '李小龍', 'somchai@example.com', 'Zürich', 'ไทย', {CHANGED}, {CHANGED}),
      (900003, '', 'Empty', 'empty@example.com', 'Bangkok', 'Thailand', {CHANGED}, {CHANGED}),
      (900004, NULL, 'Null', 'null@example.com', 'Bangkok', 'Thailand', {CHANGED}, {CHANGED});
    INSERT INTO products VALUES
      (900001, 'Refund voucher', 'Vouchers', -1.00, {CHANGED}, {CHANGED}, NULL),
      (900002, 'Gift box', 'Gifts', 10.00, {CHANGED}, {CHANGED}, 'ACME Gifts Ltd');
    INSERT INTO orders VALUES
      (900001, 900001, '2026-03-03 09:00+07', '  Shipped ', ' PromptPay ', {CHANGED}, {CHANGED}),
      (900002, 900001, '2026-03-03 09:00+07', 'returned', 'credit_card', {CHANGED}, {CHANGED}),
      (900003, 900002, '2026-03-03 00:00+07', 'pending', 'bitcoin', {CHANGED}, {CHANGED}),
      (900004, 900002, '2026-03-02 23:59:59.999999+07', 'pending', 'credit_card', {CHANGED}, {CHANGED}),
      (900005, 900003, '2026-03-03 10:00+07', 'pending', 'credit_card', {CHANGED}, {CHANGED}),
      (900005, 900003, '2026-03-03 10:00+07', 'delivered', 'credit_card', {CHANGED}, '2026-03-03 13:00+07'),
      (NULL, 900004, '2026-03-03 11:00+07', 'pending', 'credit_card', {CHANGED}, {CHANGED});
    INSERT INTO order_items VALUES
      (900001, 900001, 900002, 2, '10.00', {CHANGED}, {CHANGED}),
      (900002, 900003, 900002, 1, '10.00', {CHANGED}, {CHANGED}),
      (900003, 900004, 900002, 1, '10.00', {CHANGED}, {CHANGED}),
      (900004, 900001, 900002, 0, '10.00', {CHANGED}, {CHANGED}),
      (900005, 900001, 900002, -1, '10.00', {CHANGED}, {CHANGED}),
      (900006, 900001, 900002, 1, '-5.00', {CHANGED}, {CHANGED}),
      (900007, 900001, 900002, 1, 'ten', {CHANGED}, {CHANGED}),
      (900008, 900001, 999999, 1, '10.00', {CHANGED}, {CHANGED}),
      (900009, 999999, 900002, 1, '10.00', {CHANGED}, {CHANGED}),
      (900010, 900002, 900002, 1, '10.00', {CHANGED}, {CHANGED}),
      (900011, 900001, 900001, 1, '10.00', {CHANGED}, {CHANGED});
"""

# A day of two orders whose average is a half cent: 2.01 / 2 = 1.005, which rounds half up to
# 1.01 (in double precision 1.005 is 1.00499..., which rounds to 1.00).
HALF_CENT_DAY = f"""
    INSERT INTO orders VALUES
      (900011, 900002, '2026-02-20 10:00+07', 'delivered', 'credit_card', {CHANGED}, {CHANGED}),
      (900012, 900002, '2026-02-20 11:00+07', 'delivered', 'credit_card', {CHANGED}, {CHANGED});
    INSERT INTO order_items VALUES
      (900021, 900011, 900002, 1, '1.00', {CHANGED}, {CHANGED}),
      (900022, 900012, 900002, 1, '1.01', {CHANGED}, {CHANGED});
"""
