-- The watched table. Created only if missing: an existing `items` table is used as it is.
CREATE TABLE IF NOT EXISTS items (
    id         bigserial   PRIMARY KEY,
    name       text        NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now()
);
