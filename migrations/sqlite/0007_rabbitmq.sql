-- RabbitMQ destinations (kind = 'rabbitmq', SPEC §2.6): where their messages go. Same columns
-- and meaning in migrations/sqlite and migrations/postgres.
--
-- * Columns of their own rather than keys in the options JSON: the broker URL carries
--   credentials, and keeping it alone in one column means the store writes and reads it in
--   exactly one place each (`rows::amqp_columns` / `rows::open_amqp`), where it can be sealed
--   at rest (AEAD) without touching any other field. The API never returns it in clear.
-- * All three are NULL for webhook destinations (which use `url`); a rabbitmq destination
--   always has `amqp_url`, and `amqp_exchange` may be '' (the default exchange, which routes
--   by queue name). The service enforces this per kind, naming the offending field.
-- * `amqp_routing_key` is a template (`{topic}`, `{tenant_id}`), stored as given; the default
--   `{topic}` is written out so the API shows what is used.
-- * No index: destinations are read by id or by tenant, never searched by broker.
ALTER TABLE destinations ADD COLUMN amqp_url TEXT;
ALTER TABLE destinations ADD COLUMN amqp_exchange TEXT;
ALTER TABLE destinations ADD COLUMN amqp_routing_key TEXT;
