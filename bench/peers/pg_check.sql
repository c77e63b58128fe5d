-- bench/peers: what the run did, counted by the database (one line, '|'-separated):
-- issued codes | orders | codes issued twice | orders whose code is not issued to them |
-- issued codes without their order
SELECT (SELECT count(*) FROM codes WHERE status = 'issued'),
       (SELECT count(*) FROM orders),
       (SELECT count(*) FROM (SELECT code_id FROM orders GROUP BY code_id
                              HAVING count(*) > 1) AS twice),
       (SELECT count(*) FROM orders o LEFT JOIN codes c ON c.id = o.code_id
         WHERE c.status IS DISTINCT FROM 'issued' OR c.order_id IS DISTINCT FROM o.id),
       (SELECT count(*) FROM codes c LEFT JOIN orders o ON o.id = c.order_id
         WHERE c.status = 'issued' AND o.id IS NULL);
