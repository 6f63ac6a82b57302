-- Per product and month (order_date, Asia/Bangkok): units, revenue, orders, average selling price,
-- revenue rank in the month overall and within the category, share of the month's revenue and the
-- share of its orders that were cancelled. Every status counts in units and revenue, as in the
-- KPIs. From the product's price history: its latest list price change, and its units per day
-- (days on which the shop had orders) before and after that instant.
with lines as (
    select
        product_id,
        product_name,
        category,
        order_id,
        order_date,
        ordered_at,
        status,
        quantity,
        item_price,
        cast({{ dbt.date_trunc('month', 'order_date') }} as date) as order_month
    from {{ source('gold', 'sales_analytics') }}
),

monthly as (
    select
        order_month,
        product_id,
        product_name,
        category,
        cast(sum(quantity) as bigint) as units,
        sum(item_price) as revenue,
        count(distinct order_id) as order_count,
        count(distinct case when status = 'cancelled' then order_id end) as cancelled_orders
    from lines
    group by order_month, product_id, product_name, category
),

versions as (
    select
        product_id,
        valid_from,
        unit_price,
        lag(unit_price) over (partition by product_id order by valid_from) as previous_price
    from {{ source('silver', 'dim_product_history') }}
),

latest_price_change as (
    select product_id, valid_from as price_changed_at, previous_price as price_before, unit_price as price_after
    from (
        select
            versions.*,
            row_number() over (partition by product_id order by valid_from desc) as latest_first
        from versions
        where previous_price is not null and unit_price <> previous_price
    ) as changes
    where latest_first = 1
),

shop_days as (
    select order_date, min(ordered_at) as first_order_at, max(ordered_at) as last_order_at
    from lines
    group by order_date
),

days_around_change as (
    select
        latest_price_change.product_id,
        count(case when shop_days.first_order_at < latest_price_change.price_changed_at then 1 end) as days_before,
        count(case when shop_days.last_order_at >= latest_price_change.price_changed_at then 1 end) as days_after
    from latest_price_change
    cross join shop_days
    group by latest_price_change.product_id
),

around_change as (
    select
        days_around_change.product_id,
        days_around_change.days_before,
        days_around_change.days_after,
        coalesce(sum(case when lines.ordered_at < latest_price_change.price_changed_at then lines.quantity end), 0)
            as units_before,
        coalesce(sum(case when lines.ordered_at >= latest_price_change.price_changed_at then lines.quantity end), 0)
            as units_after
    from days_around_change
    join latest_price_change on latest_price_change.product_id = days_around_change.product_id
    left join lines on lines.product_id = days_around_change.product_id
    group by days_around_change.product_id, days_around_change.days_before, days_around_change.days_after
)

select
    monthly.order_month,
    monthly.product_id,
    monthly.product_name,
    monthly.category,
    monthly.units,
    monthly.revenue,
    monthly.order_count,
    {{ divide_half_up('monthly.revenue', 'monthly.units', 2) }} as avg_selling_price,
    cast(rank() over (partition by monthly.order_month order by monthly.revenue desc) as int) as revenue_rank,
    cast(rank() over (partition by monthly.order_month, monthly.category order by monthly.revenue desc) as int)
        as revenue_rank_in_category,
    {{ divide_half_up('monthly.revenue', 'sum(monthly.revenue) over (partition by monthly.order_month)', 4) }}
        as revenue_share,
    {{ divide_half_up('monthly.cancelled_orders', 'monthly.order_count', 4) }} as cancellation_rate,
    latest_price_change.price_changed_at,
    latest_price_change.price_before,
    latest_price_change.price_after,
    case when around_change.days_before > 0
         then {{ divide_half_up('around_change.units_before', 'around_change.days_before', 2) }} end
        as units_per_day_before_change,
    case when around_change.days_after > 0
         then {{ divide_half_up('around_change.units_after', 'around_change.days_after', 2) }} end
        as units_per_day_after_change
from monthly
left join latest_price_change on latest_price_change.product_id = monthly.product_id
left join around_change on around_change.product_id = monthly.product_id
