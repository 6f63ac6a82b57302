-- Monthly cohorts by first order (order_date, Asia/Bangkok): for each cohort and each month since
-- its first, the customers who ordered, the retention rate, and the revenue per cohort customer
-- in that month and cumulated (the LTV curve). Every status counts, as in the KPIs.
with lines as (
    select
        customer_id,
        cast({{ dbt.date_trunc('month', 'order_date') }} as date) as order_month,
        item_price
    from {{ source('gold', 'sales_analytics') }}
),

first_months as (
    select customer_id, min(order_month) as cohort_month
    from lines
    group by customer_id
),

cohorts as (
    select cohort_month, count(*) as cohort_size
    from first_months
    group by cohort_month
),

activity as (
    select
        first_months.cohort_month,
        lines.order_month,
        count(distinct lines.customer_id) as active_customers,
        sum(lines.item_price) as revenue
    from lines
    join first_months on first_months.customer_id = lines.customer_id
    group by first_months.cohort_month, lines.order_month
),

-- every month of the data from each cohort's first on, whether or not the cohort ordered in it
grid as (
    select cohorts.cohort_month, cohorts.cohort_size, months.order_month
    from cohorts
    join (select distinct order_month from lines) as months on months.order_month >= cohorts.cohort_month
),

filled as (
    select
        grid.cohort_month,
        grid.order_month,
        grid.cohort_size,
        coalesce(activity.active_customers, 0) as active_customers,
        coalesce(activity.revenue, 0) as revenue,
        sum(coalesce(activity.revenue, 0)) over (
            partition by grid.cohort_month order by grid.order_month
            rows between unbounded preceding and current row) as cumulative_revenue
    from grid
    left join activity
        on activity.cohort_month = grid.cohort_month and activity.order_month = grid.order_month
)

select
    cohort_month,
    cast((year(order_month) - year(cohort_month)) * 12 + month(order_month) - month(cohort_month) as int)
        as months_since_first_order,
    order_month,
    cohort_size,
    active_customers,
    {{ divide_half_up('active_customers', 'cohort_size', 4) }} as retention_rate,
    revenue,
    {{ divide_half_up('revenue', 'cohort_size', 2) }} as revenue_per_customer,
    {{ divide_half_up('cumulative_revenue', 'cohort_size', 2) }} as cumulative_revenue_per_customer
from filled
