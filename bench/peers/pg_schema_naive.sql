-- bench/peers: the tables a mall team would write by hand (naive form).
-- codes: the stock, one row per card code; only the primary key.
-- orders: one row per issuance; client_order_id is the mall's idempotency key.
CREATE TABLE codes (
    id        bigint PRIMARY KEY,
    sku       text   NOT NULL,
    code      text   NOT NULL,
    status    text   NOT NULL DEFAULT 'available',
    order_id  bigint,
    issued_at timestamptz
);
CREATE TABLE orders (
    id              bigserial PRIMARY KEY,
    client_order_id text   NOT NULL UNIQUE,
    sku             text   NOT NULL,
    code_id         bigint NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);
