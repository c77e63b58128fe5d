-- bench/peers: pre-fill :codes available codes for :'sku' (psql -v codes=N -v sku=S),
-- then vacuum, analyze and checkpoint so the load run starts from a settled table.
INSERT INTO codes (id, sku, code)
SELECT g, :'sku', 'PEER-' || lpad(g::text, 10, '0')
FROM generate_series(1, :codes) AS g;
VACUUM ANALYZE codes;
VACUUM ANALYZE orders;
CHECKPOINT;
