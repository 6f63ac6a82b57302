{{ config(meta={'dagster': {'ref': {'name': 'agg_customer_lifetime'}}}) }}
-- Lifetime revenue summed over customers, cohort revenue summed over cohorts and months, and
-- product revenue summed over products and months all equal the sales KPIs' total; every
-- customer is in exactly one cohort.
with totals as (
    select
        (select coalesce(sum(revenue), 0) from {{ ref('agg_sales_kpi') }}) as sales_kpi_revenue,
        (select coalesce(sum(gross_revenue), 0) from {{ ref('agg_customer_lifetime') }}) as lifetime_revenue,
        (select coalesce(sum(revenue), 0) from {{ ref('agg_customer_cohort') }}) as cohort_revenue,
        (select coalesce(sum(revenue), 0) from {{ ref('agg_product_performance') }}) as product_revenue,
        (select count(*) from {{ ref('agg_customer_lifetime') }}) as customers,
        (select coalesce(sum(cohort_size), 0) from {{ ref('agg_customer_cohort') }}
         where months_since_first_order = 0) as cohort_customers
)
select *
from totals
where lifetime_revenue <> sales_kpi_revenue
   or cohort_revenue <> sales_kpi_revenue
   or product_revenue <> sales_kpi_revenue
   or cohort_customers <> customers
