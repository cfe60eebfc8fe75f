-- The item count, kept in O(1) per write statement; a log of each committed count; and a
-- NOTIFY after each committed change.
--
-- Why one counter row: the row lock orders concurrent writers, so every change gets the exact
-- count its own commit produced (20, 21, 22, ... never two 21s) and a version that rises in
-- commit order. Statement-level triggers with transition tables cost one counter update per
-- statement, not per row, so a bulk insert of 10,000 rows is one update and one notification.
-- Why a log: any login may NOTIFY any channel with any payload, so a notification proves
-- nothing. It only wakes the listener, which reads what to rate from inventory_count_log:
-- rows only a writer of `items` (through these triggers) can add. The listener deletes the
-- rows it has read; while no listener runs, the trigger keeps the newest 100,000.
-- Why UNLOGGED: the log costs the writer no WAL, so no commit waits longer for it. It is as
-- durable as the NOTIFY it stands beside (both are gone after a server crash), and the
-- listener rates the logged counter row itself after every reconnect, as it always has.
-- Why a channel column: the listener's channel is configurable and the trigger must agree;
-- `items-listen migrate` writes the configured name here, and the listener checks it.

CREATE TABLE IF NOT EXISTS inventory_item_count (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    n         bigint  NOT NULL,
    channel   text    NOT NULL DEFAULT 'item_count'
);
ALTER TABLE inventory_item_count ADD COLUMN IF NOT EXISTS version bigint NOT NULL DEFAULT 0;

INSERT INTO inventory_item_count (n)
SELECT count(*) FROM items
ON CONFLICT (singleton) DO NOTHING;

CREATE UNLOGGED TABLE IF NOT EXISTS inventory_count_log (
    version bigint PRIMARY KEY,
    n       bigint NOT NULL
);
ALTER TABLE inventory_count_log SET UNLOGGED;

-- Applies a change to the count (a delta, or a new total for TRUNCATE), logs it, notifies.
CREATE OR REPLACE FUNCTION inventory_item_count_set(delta bigint, total_after bigint)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    total bigint;
    ver   bigint;
    chan  text;
BEGIN
    UPDATE inventory_item_count
       SET n = COALESCE(total_after, n + delta), version = version + 1
    RETURNING n, version, channel INTO total, ver, chan;
    INSERT INTO inventory_count_log (version, n) VALUES (ver, total);
    IF ver % 10000 = 0 THEN
        DELETE FROM inventory_count_log WHERE version <= ver - 100000;
    END IF;
    PERFORM pg_notify(chan, json_build_object('count', total, 'version', ver)::text);
END $$;

CREATE OR REPLACE FUNCTION inventory_item_count_add(delta bigint) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF delta <> 0 THEN
        PERFORM inventory_item_count_set(delta, NULL);
    END IF;
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
BEGIN
    PERFORM inventory_item_count_set(0, 0);
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
