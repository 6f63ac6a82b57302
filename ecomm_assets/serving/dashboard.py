"""The Ecommerce Analytics dashboard as one self-contained HTML file: the local stand-in for the
Tableau dashboard, with its four panels (Revenue, AOV, Top Selling Categories, Customer
Acquisition) drawn by Plotly, whose JavaScript is embedded so that the file works offline."""

import html
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

# What the dashboard reads: the three KPI tables dbt builds (Databricks SQL, as LakehouseEngine.query takes it).
SALES_QUERY = ("SELECT order_date, revenue, order_count, avg_order_value "
               "FROM dbt_prod_metric.agg_sales_kpi ORDER BY order_date")
CATEGORIES_QUERY = ("SELECT category, sum(quantity_sold), sum(revenue) FROM dbt_prod_metric.agg_product_kpi "
                    "GROUP BY category ORDER BY 2 DESC, 1")
CUSTOMERS_QUERY = ("SELECT order_date, active_customers, new_customers "
                   "FROM dbt_prod_metric.agg_customer_kpi ORDER BY order_date")


@dataclass(frozen=True)
class Kpis:
    sales: list[tuple[date, Decimal, int, Decimal]]  # order_date, revenue, order_count, avg_order_value
    categories: list[tuple[str, int, Decimal]]  # category, units sold, revenue
    customers: list[tuple[date, int, int]]  # order_date, active customers, new customers

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


def _panel(panel_id: str, title: str, figure: go.Figure) -> str:
    figure.update_layout(title=title, margin={"l": 60, "r": 20, "t": 50, "b": 40}, height=360,
                         template="plotly_white", legend={"orientation": "h", "y": -0.2})
    chart = figure.to_html(full_html=False, include_plotlyjs=False, div_id=f"{panel_id}-chart",
                           config={"displaylogo": False, "responsive": True})
    return f'<section class="panel" id="{panel_id}">{chart}</section>'


def render(kpis: Kpis, generated_for: str) -> str:
    """The dashboard page for ``kpis``; ``generated_for`` says which data it shows."""
    days = [r[0].isoformat() for r in kpis.sales]
    panels = [
        _panel("revenue", "Revenue per day", go.Figure(go.Scatter(
            x=days, y=[float(r[1]) for r in kpis.sales], mode="lines+markers", name="revenue"))),
        _panel("aov", "Average order value per day", go.Figure(go.Scatter(
            x=days, y=[float(r[3]) for r in kpis.sales], mode="lines+markers", name="AOV"))),
        _panel("top-categories", "Top selling categories (units sold)", go.Figure(go.Bar(
            x=[r[1] for r in kpis.categories][::-1], y=[r[0] for r in kpis.categories][::-1], orientation="h",
            customdata=[f"{r[2]:,.2f}" for r in kpis.categories][::-1],
            hovertemplate="%{y}: %{x} units, revenue %{customdata}<extra></extra>", name="units"))),
        _panel("customer-acquisition", "Customer acquisition", go.Figure([
            go.Bar(x=[r[0].isoformat() for r in kpis.customers], y=[r[2] for r in kpis.customers],
                   name="new customers"),
            go.Scatter(x=[r[0].isoformat() for r in kpis.customers], y=[r[1] for r in kpis.customers],
                       mode="lines", name="active customers"),
        ])),
    ]
    labels = {"revenue": "Revenue", "orders": "Orders", "aov": "AOV", "new_customers": "New customers"}
    cards = "".join(f'<div class="kpi" data-kpi="{key}"><span>{labels[key]}</span><b>{value}</b></div>'
                    for key, value in kpis.headline.items())
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Ecommerce Analytics</title>
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
<h1>Ecommerce Analytics</h1>
<p>{html.escape(generated_for)}</p>
<div class="kpis">{cards}</div>
<div class="panels">{''.join(panels)}</div>
</body></html>
"""


def write(page: str, path: Path) -> Path:
    """Write the page atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(page, encoding="utf-8")
    temporary.replace(path)
    return path
