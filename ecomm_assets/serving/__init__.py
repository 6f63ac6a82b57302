"""Serving: what the business looks at, refreshed when the KPIs land."""
