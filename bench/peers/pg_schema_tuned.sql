-- bench/peers: the tuned form: same tables, plus a partial index that holds only the
-- available codes, so picking the next one never walks over issued rows.
\ir pg_schema_naive.sql
CREATE INDEX codes_available ON codes (sku, id) WHERE status = 'available';
