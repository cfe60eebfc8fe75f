-- The item count, kept in O(1) per write statement, and a NOTIFY after each committed change.
--
-- Why one counter row: the row lock orders concurrent writers, so every notification carries
-- the exact count its own commit produced (20, 21, 22, ... never two 21s). Statement-level
-- triggers with transition tables cost one counter update per statement, not per row, so a
-- bulk insert of 10,000 rows is one update and one notification.
-- Why a channel column: the listener's channel is configurable and the trigger must agree;
-- `items-listen migrate` writes the configured name here.

CREATE TABLE IF NOT EXISTS inventory_item_count (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    n         bigint  NOT NULL,
    channel   text    NOT NULL DEFAULT 'item_count'
);

INSERT INTO inventory_item_count (n)
SELECT count(*) FROM items
ON CONFLICT (singleton) DO NOTHING;

CREATE OR REPLACE FUNCTION inventory_item_count_add(delta bigint) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    total bigint;
    chan  text;
BEGIN
    IF delta = 0 THEN
        RETURN;
    END IF;
    UPDATE inventory_item_count SET n = n + delta RETURNING n, channel INTO total, chan;
    PERFORM pg_notify(chan, json_build_object('count', total)::text);
END $$;

CREATE OR REPLACE FUNCTION inventory_items_inserted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM inventory_item_count_add((SELECT count(*) FROM inventory_new_rows));
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION inventory_items_deleted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM inventory_item_count_add(-(SELECT count(*) FROM inventory_old_rows));
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION inventory_items_truncated() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    chan text;
BEGIN
    UPDATE inventory_item_count SET n = 0 RETURNING channel INTO chan;
    PERFORM pg_notify(chan, json_build_object('count', 0)::text);
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS inventory_items_inserted ON items;
CREATE TRIGGER inventory_items_inserted
    AFTER INSERT ON items REFERENCING NEW TABLE AS inventory_new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION inventory_items_inserted();

DROP TRIGGER IF EXISTS inventory_items_deleted ON items;
CREATE TRIGGER inventory_items_deleted
    AFTER DELETE ON items REFERENCING OLD TABLE AS inventory_old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION inventory_items_deleted();

DROP TRIGGER IF EXISTS inventory_items_truncated ON items;
CREATE TRIGGER inventory_items_truncated
    AFTER TRUNCATE ON items
    FOR EACH STATEMENT EXECUTE FUNCTION inventory_items_truncated();
