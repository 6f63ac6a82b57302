{#- A condition on `column`: between the days the Dagster run builds (ECOMM_RUN_FIRST_DAY and
    ECOMM_RUN_LAST_DAY, which the metric_models asset sets); `otherwise` when dbt runs by hand. -#}
{% macro in_run_days(column, otherwise='true') -%}
  {%- set first_day = env_var('ECOMM_RUN_FIRST_DAY', '') -%}
  {%- set last_day = env_var('ECOMM_RUN_LAST_DAY', '') -%}
  {%- if first_day and last_day -%}
    {{ column }} between cast('{{ first_day }}' as date) and cast('{{ last_day }}' as date)
  {%- else -%}
    {{ otherwise }}
  {%- endif -%}
{%- endmacro %}
