-- Jobs that used up their tries, or could not be decoded. Laravel's own columns, so existing
-- tooling that reads `failed_jobs` keeps working. In PostgreSQL, not Redis, because Redis may
-- keep nothing on disk and a failed alert must survive a restart.
CREATE TABLE IF NOT EXISTS failed_jobs (
    id         bigserial   PRIMARY KEY,
    uuid       text        NOT NULL UNIQUE,
    connection text        NOT NULL DEFAULT 'redis',
    queue      text        NOT NULL,
    payload    text        NOT NULL,
    exception  text        NOT NULL,
    failed_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS failed_jobs_failed_at ON failed_jobs (failed_at);
