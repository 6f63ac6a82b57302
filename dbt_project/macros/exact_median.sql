{#- The median of `value` per `group_by` in `relation`: the middle value, or half the sum of the
    two middle ones, in exact decimal arithmetic (a warehouse's median() may interpolate in double
    precision or round to the input's scale: engines would disagree in the last digit). -#}
{% macro exact_median(relation, group_by, value, scale=4) -%}
    select
        {{ group_by | join(', ') }},
        cast(0.5 * (sum(case when position = floor((values_count + 1) / 2) then {{ value }} end)
                    + sum(case when position = floor((values_count + 2) / 2) then {{ value }} end))
             as decimal(18, {{ scale }})) as median_value
    from (
        select
            *,
            row_number() over (partition by {{ group_by | join(', ') }} order by {{ value }}) as position,
            count(*) over (partition by {{ group_by | join(', ') }}) as values_count
        from {{ relation }}
        where {{ value }} is not null
    ) as ranked
    group by {{ group_by | join(', ') }}
{%- endmacro %}
