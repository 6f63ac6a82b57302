"""The Ecommerce Analytics dashboard as one self-contained HTML file: the local stand-in for the
Tableau dashboard. Three views on one page, drawn by Plotly, whose JavaScript is embedded so that
the file works offline: Sales (Revenue, AOV, Top Selling Categories, Customer Acquisition),
Customer Analytics (cohort retention, segment mix, LTV curve), Product Performance (top
products, category share, what price changes did) and Data Quality (the pipeline's overall score
per day and source table). Amounts are in Thai baht."""

import html
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

# What the dashboard reads: the metric tables dbt builds and Silver's quality score (Databricks SQL,
# as LakehouseEngine.query takes it).
SALES_QUERY = ("SELECT order_date, revenue, order_count, avg_order_value "
               "FROM dbt_prod_metric.agg_sales_kpi ORDER BY order_date")
CATEGORIES_QUERY = ("SELECT category, sum(quantity_sold), sum(revenue) FROM dbt_prod_metric.agg_product_kpi "
                    "GROUP BY category ORDER BY 2 DESC, 1")
CUSTOMERS_QUERY = ("SELECT order_date, active_customers, new_customers "
                   "FROM dbt_prod_metric.agg_customer_kpi ORDER BY order_date")
COHORTS_QUERY = ("SELECT cohort_month, months_since_first_order, cohort_size, retention_rate, "
                 "cumulative_revenue_per_customer FROM dbt_prod_metric.agg_customer_cohort ORDER BY 1, 2")
SEGMENTS_QUERY = ("SELECT segment, count(*), sum(net_revenue) FROM dbt_prod_metric.agg_customer_lifetime "
                  "GROUP BY segment ORDER BY 2 DESC, 1")
TOP_PRODUCTS_QUERY = ("SELECT product_name, category, sum(units), sum(revenue) FROM dbt_prod_metric.agg_product_performance "
                      "GROUP BY product_id, product_name, category ORDER BY 4 DESC, 1 LIMIT 10")
PRICE_CHANGES_QUERY = ("SELECT DISTINCT product_name, price_before, price_after, units_per_day_before_change, "
                       "units_per_day_after_change FROM dbt_prod_metric.agg_product_performance "
                       "WHERE units_per_day_before_change > 0 AND units_per_day_after_change IS NOT NULL ORDER BY 1")
QUALITY_QUERY = ("SELECT _ingestion_date, source_table, score FROM silver.data_quality "
                 "WHERE dimension = 'overall' ORDER BY 1, 2")
QUERIES = (SALES_QUERY, CATEGORIES_QUERY, CUSTOMERS_QUERY, COHORTS_QUERY, SEGMENTS_QUERY, TOP_PRODUCTS_QUERY,
           PRICE_CHANGES_QUERY, QUALITY_QUERY)
CURRENCY = "THB"


@dataclass(frozen=True)
class DashboardData:
    """The rows of each query in QUERIES, in that order."""

    sales: list[tuple[date, Decimal, int, Decimal]]  # order_date, revenue, order_count, avg_order_value
    categories: list[tuple[str, int, Decimal]]  # category, units sold, revenue
    customers: list[tuple[date, int, int]]  # order_date, active customers, new customers
    cohorts: list[tuple[date, int, int, Decimal, Decimal]]  # cohort, months since, size, retention, cumulative revenue/customer
    segments: list[tuple[str, int, Decimal]]  # segment, customers, net revenue
    top_products: list[tuple[str, str, int, Decimal]]  # product, category, units, revenue
    price_changes: list[tuple[str, Decimal, Decimal, Decimal, Decimal]]  # product, price before/after, units/day before/after
    quality: list[tuple[date, str, Decimal]]  # ingestion date, source table, overall quality score

    @property
    def headline(self) -> dict[str, str]:
        revenue = sum((r[1] for r in self.sales), Decimal(0))
        orders = sum(r[2] for r in self.sales)
        return {
            "revenue": f"{revenue:,.2f}",
            "orders": f"{orders:,}",
            "aov": f"{(revenue / orders if orders else Decimal(0)).quantize(Decimal('0.01')):,.2f}",
            "new_customers": f"{sum(r[2] for r in self.customers):,}",
        }


def panel(panel_id: str, title: str, figure: go.Figure, x_title: str = "", y_title: str = "") -> str:
    figure.update_layout(title=title, margin={"l": 70, "r": 20, "t": 50, "b": 50}, height=360,
                         template="plotly_white", legend={"orientation": "h", "y": -0.25},
                         xaxis_title=x_title, yaxis_title=y_title)
    chart = figure.to_html(full_html=False, include_plotlyjs=False, div_id=f"{panel_id}-chart",
                           config={"displaylogo": False, "responsive": True})
    return f'<section class="panel" id="{panel_id}">{chart}</section>'


def _percent_change(before: Decimal, after: Decimal) -> float:
    return float((after - before) / before * 100)


def _sales_panels(data: DashboardData) -> list[str]:
    days = [r[0].isoformat() for r in data.sales]
    return [
        panel("revenue", f"Revenue per day ({CURRENCY})", go.Figure(go.Scatter(
            x=days, y=[float(r[1]) for r in data.sales], mode="lines+markers", name="revenue")),
            "Order date (Asia/Bangkok)", f"Revenue ({CURRENCY})"),
        panel("aov", f"Average order value per day ({CURRENCY})", go.Figure(go.Scatter(
            x=days, y=[float(r[3]) for r in data.sales], mode="lines+markers", name="AOV")),
            "Order date (Asia/Bangkok)", f"AOV ({CURRENCY})"),
        panel("top-categories", "Top selling categories (units sold)", go.Figure(go.Bar(
            x=[r[1] for r in data.categories][::-1], y=[r[0] for r in data.categories][::-1], orientation="h",
            customdata=[f"{r[2]:,.2f}" for r in data.categories][::-1],
            hovertemplate=f"%{{y}}: %{{x}} units, revenue %{{customdata}} {CURRENCY}<extra></extra>", name="units")),
            "Units sold", "Category"),
        panel("customer-acquisition", "Customer acquisition", go.Figure([
            go.Bar(x=[r[0].isoformat() for r in data.customers], y=[r[2] for r in data.customers],
                   name="new customers"),
            go.Scatter(x=[r[0].isoformat() for r in data.customers], y=[r[1] for r in data.customers],
                       mode="lines", name="active customers"),
        ]), "Order date (Asia/Bangkok)", "Customers"),
    ]


def _customer_panels(data: DashboardData) -> list[str]:
    cohorts = sorted({r[0] for r in data.cohorts})
    months = sorted({r[1] for r in data.cohorts})
    retention = {(r[0], r[1]): float(r[3]) * 100 for r in data.cohorts}
    sizes = {r[0]: r[2] for r in data.cohorts}
    labels = [f"{c:%Y-%m} ({sizes[c]:,})" for c in cohorts]
    cells = [[retention.get((c, m)) for m in months] for c in cohorts]
    heatmap = go.Figure(go.Heatmap(
        x=months, y=labels, z=cells, colorscale="Blues", zmin=0, zmax=100, texttemplate="%{text}",
        text=[["" if v is None else f"{v:.0f}%" for v in row] for row in cells],
        hovertemplate="cohort %{y}, month %{x}: %{z:.1f}%<extra></extra>"))
    ltv = go.Figure([go.Scatter(x=[r[1] for r in data.cohorts if r[0] == c], mode="lines+markers", name=f"{c:%Y-%m}",
                                y=[float(r[4]) for r in data.cohorts if r[0] == c]) for c in cohorts])
    for figure in (heatmap, ltv):
        figure.update_xaxes(dtick=1)  # whole months
    return [
        panel("cohort-retention", "Cohort retention (% of the cohort ordering)", heatmap,
               "Months since first order", "Cohort (customers)"),
        panel("segments", "Customer segments (RFM)", go.Figure(go.Bar(
            x=[r[0] for r in data.segments], y=[r[1] for r in data.segments],
            customdata=[f"{r[2]:,.2f}" for r in data.segments],
            hovertemplate=f"%{{x}}: %{{y}} customers, net revenue %{{customdata}} {CURRENCY}<extra></extra>",
            name="customers")), "Segment", "Customers"),
        panel("ltv-curve", f"LTV curve: cumulative revenue per customer ({CURRENCY})", ltv,
               "Months since first order", f"Revenue per customer ({CURRENCY})"),
    ]


def _product_panels(data: DashboardData) -> list[str]:
    changes = data.price_changes
    return [
        panel("top-products", f"Top products by revenue ({CURRENCY})", go.Figure(go.Bar(
            x=[float(r[3]) for r in data.top_products][::-1], y=[r[0] for r in data.top_products][::-1],
            orientation="h", customdata=[f"{r[1]}, {r[2]:,} units" for r in data.top_products][::-1],
            hovertemplate="%{y} (%{customdata}): %{x:,.2f}<extra></extra>", name="revenue")),
            f"Revenue ({CURRENCY})", "Product"),
        panel("category-share", "Share of revenue by category", go.Figure(go.Pie(
            labels=[r[0] for r in data.categories], values=[float(r[2]) for r in data.categories],
            hovertemplate=f"%{{label}}: %{{value:,.2f}} {CURRENCY} (%{{percent}})<extra></extra>"))),
        panel("price-changes", "Latest price change: units per day after vs before", go.Figure(go.Scatter(
            x=[_percent_change(r[1], r[2]) for r in changes], y=[_percent_change(r[3], r[4]) for r in changes],
            mode="markers", text=[r[0] for r in changes], name="products",
            customdata=[f"{r[1]} to {r[2]} {CURRENCY}, {r[3]} to {r[4]} units/day" for r in changes],
            hovertemplate="%{text}: %{customdata}<extra></extra>")),
            "List price change (%)", "Units per day change (%)"),
    ]


def _quality_panels(data: DashboardData) -> list[str]:
    tables = sorted({r[1] for r in data.quality})
    figure = go.Figure([go.Scatter(x=[r[0].isoformat() for r in data.quality if r[1] == t], mode="lines+markers",
                                   y=[float(r[2]) for r in data.quality if r[1] == t], name=t) for t in tables])
    figure.update_yaxes(range=[0, 100.5])
    return [panel("quality-score", "Overall data quality score (0-100)", figure,
                   "Ingestion date (Asia/Bangkok)", "Score")]


def render(data: DashboardData, generated_for: str) -> str:
    """The dashboard page for ``data``; ``generated_for`` says which data it shows."""
    views = [("sales", "Sales", _sales_panels(data)),
             ("customer-analytics", "Customer Analytics", _customer_panels(data)),
             ("product-performance", "Product Performance", _product_panels(data)),
             ("data-quality", "Data Quality", _quality_panels(data))]
    labels = {"revenue": f"Revenue ({CURRENCY})", "orders": "Orders", "aov": f"AOV ({CURRENCY})",
              "new_customers": "New customers"}
    cards = "".join(f'<div class="kpi" data-kpi="{key}"><span>{labels[key]}</span><b>{value}</b></div>'
                    for key, value in data.headline.items())
    return html_page("Ecommerce Analytics", generated_for, views, f'<div class="kpis">{cards}</div>')


def html_page(title: str, subtitle: str, views: list[tuple[str, str, list[str]]], header: str = "") -> str:
    """A self-contained page (plotly.js inside, nothing to fetch): its title, a line saying what it
    shows, ``header``, then each view (id, title, panels) under a link in the navigation."""
    nav = " · ".join(f'<a href="#{view_id}">{view_title}</a>' for view_id, view_title, _ in views)
    sections = "".join(f'<h2 id="{view_id}">{view_title}</h2><div class="panels">{"".join(panels)}</div>'
                       for view_id, view_title, panels in views)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 24px; color: #222; }}
.kpis {{ display: flex; gap: 16px; margin: 16px 0; }}
.kpi {{ border: 1px solid #ddd; border-radius: 6px; padding: 12px 20px; }}
.kpi span {{ display: block; color: #666; font-size: 13px; }} .kpi b {{ font-size: 22px; }}
.panels {{ display: grid; grid-template-columns: 1fr 1fr; gap: 16px; }}
.panel {{ border: 1px solid #eee; border-radius: 6px; }}
</style>
<script>{get_plotlyjs()}</script>
</head><body>
<h1>{html.escape(title)}</h1>
<p>{html.escape(subtitle)}</p>
<nav>{nav}</nav>
{header}
{sections}
</body></html>
"""


def write(page: str, path: Path) -> Path:
    """Write the page atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(page, encoding="utf-8")
    temporary.replace(path)
    return path
