{# Metric models live in exactly the schema they name (dbt_prod_metric), on every target. #}
{% macro generate_schema_name(custom_schema_name, node) -%}
  {{ custom_schema_name if custom_schema_name else target.schema }}
{%- endmacro %}
