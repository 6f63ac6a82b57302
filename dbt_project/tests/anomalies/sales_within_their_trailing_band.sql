{{ config(severity='warn') }}
-- Warns of a day of the run whose revenue, orders or AOV is outside the band of the 28 days before
-- it (agg_sales_anomalies): a checkout bug that halves the orders, a price error that doubles the AOV.
select order_date, metric, value, trailing_median, band_low, band_high
from {{ ref('agg_sales_anomalies') }}
where is_anomaly and {{ in_run_days('order_date') }}
