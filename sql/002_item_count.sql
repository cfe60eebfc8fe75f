-- The item count, kept in O(1) per write statement, and a signed NOTIFY after each committed
-- change.
--
-- Why one counter row: the row lock orders concurrent writers, so every change gets the exact
-- count its own commit produced (20, 21, 22, ... never two 21s) and a version that rises in
-- commit order. Statement-level triggers with transition tables cost one counter update per
-- statement, not per row, so a bulk insert of 10,000 rows is one update and one notification.
-- Why a signature: any login may NOTIFY any channel with any payload, so the trigger signs
-- each payload (HMAC-SHA256 of "count:version" with a key only the owner of these tables can
-- read), and the listener rates only payloads that carry a valid signature and a version
-- above the last it rated: a forged one, or a real one replayed, is ignored. The trigger
-- functions run as their owner (SECURITY DEFINER), so writers of `items` need no rights on
-- the counter, and nobody else can read the key.
-- Why a channel column: the listener's channel is configurable and the trigger must agree;
-- `items-listen migrate` writes the configured name here, and the listener checks it.

CREATE TABLE IF NOT EXISTS inventory_item_count (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    n         bigint  NOT NULL,
    channel   text    NOT NULL DEFAULT 'item_count'
);
ALTER TABLE inventory_item_count ADD COLUMN IF NOT EXISTS version bigint NOT NULL DEFAULT 0;
-- The signing key, stored as the two padded halves of HMAC (key XOR ipad, key XOR opad):
-- the trigger then signs with two sha256() calls and no loop.
ALTER TABLE inventory_item_count ADD COLUMN IF NOT EXISTS mac_inner bytea;
ALTER TABLE inventory_item_count ADD COLUMN IF NOT EXISTS mac_outer bytea;
REVOKE ALL ON inventory_item_count FROM PUBLIC;
DROP TABLE IF EXISTS inventory_count_log;

INSERT INTO inventory_item_count (n)
SELECT count(*) FROM items
ON CONFLICT (singleton) DO NOTHING;

-- A random 32-byte key (gen_random_uuid is core PostgreSQL since 13), made once.
DO $$
DECLARE
    k     bytea := decode(replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), 'hex')
                   || '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea;
    pad_in  bytea := '\x'::bytea;
    pad_out bytea := '\x'::bytea;
BEGIN
    IF (SELECT mac_inner IS NOT NULL FROM inventory_item_count) THEN
        RETURN;
    END IF;
    FOR i IN 0..63 LOOP
        pad_in := pad_in || set_byte('\x00'::bytea, 0, get_byte(k, i) # 54);
        pad_out := pad_out || set_byte('\x00'::bytea, 0, get_byte(k, i) # 92);
    END LOOP;
    UPDATE inventory_item_count SET mac_inner = pad_in, mac_outer = pad_out;
END $$;

-- Applies a change to the count (a delta, or a new total for TRUNCATE) and notifies, signed.
CREATE OR REPLACE FUNCTION inventory_item_count_set(delta bigint, total_after bigint)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    total bigint;
    ver   bigint;
    chan  text;
    ki    bytea;
    ko    bytea;
BEGIN
    UPDATE inventory_item_count
       SET n = COALESCE(total_after, n + delta), version = version + 1
    RETURNING n, version, channel, mac_inner, mac_outer INTO total, ver, chan, ki, ko;
    PERFORM pg_notify(chan, json_build_object(
        'count', total,
        'version', ver,
        'mac', encode(sha256(ko || sha256(ki || convert_to(total || ':' || ver, 'UTF8'))), 'hex')
    )::text);
END $$;

CREATE OR REPLACE FUNCTION inventory_item_count_add(delta bigint) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF delta <> 0 THEN
        PERFORM inventory_item_count_set(delta, NULL);
    END IF;
END $$;

CREATE OR REPLACE FUNCTION inventory_items_inserted() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
    PERFORM inventory_item_count_add((SELECT count(*) FROM inventory_new_rows));
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION inventory_items_deleted() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
    PERFORM inventory_item_count_add(-(SELECT count(*) FROM inventory_old_rows));
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION inventory_items_truncated() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
    PERFORM inventory_item_count_set(0, 0);
    RETURN NULL;
END $$;

-- A function that runs as its owner must not find its tables through a caller's search_path:
-- pin the schema they were created in.
DO $$
DECLARE
    f text;
BEGIN
    FOREACH f IN ARRAY ARRAY['inventory_items_inserted()', 'inventory_items_deleted()',
                             'inventory_items_truncated()', 'inventory_item_count_add(bigint)',
                             'inventory_item_count_set(bigint, bigint)'] LOOP
        EXECUTE format('ALTER FUNCTION %s SET search_path = %I, pg_temp', f, current_schema());
    END LOOP;
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
