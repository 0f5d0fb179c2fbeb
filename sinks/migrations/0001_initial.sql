-- The spine's tables: current events, deletion markers, dead letters, API keys.
-- Every tenant-owned table leads its primary key with the tenant.

CREATE TABLE events (
    tenant       text        NOT NULL,
    family       text        NOT NULL,
    event_id     text        NOT NULL,
    type         text        NOT NULL,
    source       text        NOT NULL,
    subject      text,
    time         timestamptz NOT NULL,
    data         jsonb       NOT NULL,
    received_at  timestamptz NOT NULL,
    version      bigint      NOT NULL,
    stored_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, family, event_id)
);
CREATE INDEX events_by_time ON events (tenant, family, time, event_id);

-- A deletion keeps its version, so no older version can come back later
-- (a redelivery, a sink restarted from an earlier offset, a replay).
CREATE TABLE event_deletions (
    tenant      text        NOT NULL,
    family      text        NOT NULL,
    event_id    text        NOT NULL,
    version     bigint      NOT NULL,
    deleted_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, family, event_id)
);

CREATE TABLE dead_letters (
    dead_letter_id    uuid        PRIMARY KEY,
    tenant            text        NOT NULL,
    family            text        NOT NULL,
    route             jsonb       NOT NULL DEFAULT '{}',
    content_type      text        NOT NULL,
    raw               bytea       NOT NULL,
    stage             text        NOT NULL CHECK (stage IN ('door', 'stream')),
    reasons           jsonb       NOT NULL,
    received_at       timestamptz NOT NULL,
    event_id          text,
    attempt           integer     NOT NULL DEFAULT 1,
    replay_of         uuid,
    source_topic      text,
    source_partition  integer,
    source_offset     bigint,
    status            text        NOT NULL DEFAULT 'pending'
                                  CHECK (status IN ('pending', 'replayed', 'discarded')),
    stored_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX dead_letters_by_tenant ON dead_letters (tenant, received_at, dead_letter_id);

CREATE TABLE api_keys (
    prefix      text        PRIMARY KEY,
    tenant      text        NOT NULL,
    key_hash    bytea       NOT NULL,
    scopes      text[]      NOT NULL,
    label       text        NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz,
    revoked_at  timestamptz
);
CREATE INDEX api_keys_by_tenant ON api_keys (tenant);
