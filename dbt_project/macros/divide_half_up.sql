{#- numerator / denominator to `places` decimals, half up, the same on every engine. Databricks
    divides decimals exactly, DuckDB in double precision (2.01 / 2 would give 1.00499... and round
    down), so the division rounds whole units of the last place: floor(n / d + 1/2). For a
    numerator >= 0 and a denominator > 0 (revenue is never negative: valid_price). -#}
{% macro divide_half_up(numerator, denominator, places) -%}
    cast(floor(({{ numerator }} * {{ 2 * 10 ** places }} + {{ denominator }}) / ({{ denominator }} * 2)) / {{ 10 ** places }}
         as decimal(18, {{ places }}))
{%- endmacro %}
