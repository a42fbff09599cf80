SELECT ranked.customer_id, CAST(CASE WHEN (ranked.tier_index = %(tier_index_1)s::INTEGER) THEN %(param_1)s::VARCHAR WHEN (ranked.tier_index = %(tier_index_2)s::INTEGER) THEN %(param_2)s::VARCHAR ELSE NULL END AS TEXT) AS tier, ranked.tier_index 
FROM (SELECT metrics.customer_id AS customer_id, CAST(CASE WHEN (metrics.m0 > CAST(%(param_3)s AS NUMERIC) AND metrics.m1 = %(param_4)s::VARCHAR) THEN %(param_5)s::INTEGER ELSE %(param_6)s::INTEGER END AS INTEGER) AS tier_index 
FROM (SELECT customers.id AS customer_id, coalesce(order_facts.o0, %(coalesce_1)s::INTEGER) AS m0, customers.region AS m1 
FROM customers LEFT OUTER JOIN (SELECT orders.customer_id AS customer_id, sum(orders.amount) FILTER (WHERE orders.ordered_at >= %(param_7)s::TIMESTAMP WITH TIME ZONE) AS o0 
FROM orders 
WHERE orders.ordered_at < %(as_of)s::TIMESTAMP WITH TIME ZONE GROUP BY orders.customer_id) AS order_facts ON order_facts.customer_id = customers.id) AS metrics) AS ranked
