-- Each day's revenue, orders and AOV against the 28 days before it: their median and median
-- absolute deviation (MAD), and a band of 5 robust standard deviations (1.4826 x MAD) around the
-- median. A day outside the band, with at least 14 days before it, is an anomaly.
with daily as (
    select order_date, 'revenue' as metric, cast(revenue as decimal(18, 2)) as value
    from {{ ref('agg_sales_kpi') }}
    union all
    select order_date, 'order_count', cast(order_count as decimal(18, 2)) from {{ ref('agg_sales_kpi') }}
    union all
    select order_date, 'avg_order_value', cast(avg_order_value as decimal(18, 2)) from {{ ref('agg_sales_kpi') }}
),

earlier_days as (
    select judged.order_date, judged.metric, earlier.value as earlier_value
    from daily as judged
    join daily as earlier
        on earlier.metric = judged.metric
        and earlier.order_date < judged.order_date
        and earlier.order_date >= {{ dbt.dateadd('day', -28, 'judged.order_date') }}
),

trailing_counts as (
    select order_date, metric, count(*) as trailing_days from earlier_days group by order_date, metric
),

medians as (
    {{ exact_median('earlier_days', ['order_date', 'metric'], 'earlier_value') }}
),

deviations as (
    select earlier_days.order_date, earlier_days.metric,
        abs(earlier_days.earlier_value - medians.median_value) as deviation
    from earlier_days
    join medians on medians.order_date = earlier_days.order_date and medians.metric = earlier_days.metric
),

mads as (
    {{ exact_median('deviations', ['order_date', 'metric'], 'deviation') }}
),

bands as (
    select
        daily.order_date,
        daily.metric,
        daily.value,
        coalesce(trailing_counts.trailing_days, 0) as trailing_days,
        medians.median_value as trailing_median,
        mads.median_value as trailing_mad
    from daily
    left join trailing_counts on trailing_counts.order_date = daily.order_date and trailing_counts.metric = daily.metric
    left join medians on medians.order_date = daily.order_date and medians.metric = daily.metric
    left join mads on mads.order_date = daily.order_date and mads.metric = daily.metric
)

select
    order_date,
    metric,
    value,
    trailing_days,
    trailing_median,
    trailing_mad,
    cast(trailing_median - 7.413 * trailing_mad as decimal(18, 4)) as band_low,
    cast(trailing_median + 7.413 * trailing_mad as decimal(18, 4)) as band_high,
    coalesce(trailing_days >= 14 and abs(value - trailing_median) > 7.413 * trailing_mad, false) as is_anomaly
from bands
