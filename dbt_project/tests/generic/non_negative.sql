{#- The rows where column_name is negative: a sum of prices, quantities or customers never is. -#}
{% test non_negative(model, column_name) %}
select {{ column_name }}
from {{ model }}
where {{ column_name }} < 0
{% endtest %}
