SELECT ranked.customer_id, (%(param_1)s::TEXT[])[(ranked.tier_index + %(tier_index_1)s::INTEGER)] AS tier, ranked.tier_index 
FROM (SELECT metrics.customer_id AS customer_id, CAST(CASE WHEN (metrics.m0 > %(param_2)s AND metrics.m1 = %(param_3)s::VARCHAR) THEN %(param_4)s::INTEGER ELSE %(param_5)s::INTEGER END AS INTEGER) AS tier_index 
FROM (SELECT customers.id AS customer_id, coalesce(order_facts.o0, %(coalesce_1)s::INTEGER) AS m0, customers.region AS m1 
FROM customers LEFT OUTER JOIN (SELECT orders.customer_id AS customer_id, sum(orders.amount) FILTER (WHERE orders.ordered_at >= %(window_start_365)s::TIMESTAMP WITH TIME ZONE) AS o0 
FROM orders 
WHERE orders.ordered_at < %(as_of)s::TIMESTAMP WITH TIME ZONE GROUP BY orders.customer_id) AS order_facts ON order_facts.customer_id = customers.id) AS metrics) AS ranked
