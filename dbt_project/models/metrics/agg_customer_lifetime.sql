-- One row per customer with an order in Gold. Gross revenue counts every status, as the KPIs do;
-- net revenue leaves cancelled orders out. Recency is counted to the last order_date in the data,
-- not to today, so the same data always gives the same table.
with orders as (
    select
        customer_id,
        order_id,
        order_date,
        ordered_at,
        status,
        sum(quantity) as items,
        sum(item_price) as revenue,
        max(customer_city_at_order) as city_at_order,
        row_number() over (partition by customer_id order by ordered_at, order_id) as order_number
    from {{ source('gold', 'sales_analytics') }}
    group by customer_id, order_id, order_date, ordered_at, status
),

customers as (
    select
        customer_id,
        min(order_date) as first_order_date,
        max(order_date) as last_order_date,
        count(*) as order_count,
        cast(sum(items) as bigint) as items,
        sum(revenue) as gross_revenue,
        coalesce(sum(case when status <> 'cancelled' then revenue end), 0) as net_revenue,
        max(case when order_number = 1 then city_at_order end) as city_at_first_order
    from orders
    group by customer_id
),

measured as (
    select
        customers.*,
        cast({{ dbt.datediff('customers.last_order_date', 'data_end.last_order_date', 'day') }} as int) as days_since_last_order
    from customers
    cross join (select max(last_order_date) as last_order_date from customers) as data_end
),

-- RFM: each of recency, frequency and monetary (net revenue) scored 1-5 by quintile of percent
-- rank, so customers with equal values share a score; 5 is the most recent, frequent, valuable.
scored as (
    select
        measured.*,
        least(5, 1 + cast(floor(5 * percent_rank() over (order by days_since_last_order desc)) as int)) as recency_score,
        least(5, 1 + cast(floor(5 * percent_rank() over (order by order_count)) as int)) as frequency_score,
        least(5, 1 + cast(floor(5 * percent_rank() over (order by net_revenue)) as int)) as monetary_score
    from measured
)

select
    scored.customer_id,
    scored.first_order_date,
    scored.last_order_date,
    scored.order_count,
    scored.items,
    scored.gross_revenue,
    scored.net_revenue,
    {{ divide_half_up('scored.gross_revenue', 'scored.order_count', 2) }} as avg_order_value,
    scored.days_since_last_order,
    case when scored.order_count > 1 then 'returning' else 'new' end as customer_type,
    scored.recency_score,
    scored.frequency_score,
    scored.monetary_score,
    concat(cast(scored.recency_score as string), cast(scored.frequency_score as string),
           cast(scored.monetary_score as string)) as rfm_score,
    case
        when scored.order_count = 1 and scored.recency_score >= 4 then 'new'
        when scored.recency_score >= 4 and scored.frequency_score >= 4 then 'champions'
        when scored.recency_score >= 3 and scored.frequency_score >= 3 then 'loyal'
        when scored.recency_score <= 2 and scored.frequency_score >= 3 then 'at_risk'
        when scored.recency_score <= 2 then 'hibernating'
        else 'needs_attention'
    end as segment,
    current_city.customer_city as current_city,
    scored.city_at_first_order
from scored
join (select distinct customer_id, customer_city from {{ source('gold', 'sales_analytics') }}) as current_city
    on current_city.customer_id = scored.customer_id
