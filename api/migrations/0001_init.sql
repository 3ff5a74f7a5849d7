-- Portable across SQLite and PostgreSQL: TEXT ids, BIGINT Unix-millisecond times, JSON as TEXT.
CREATE TABLE datasets (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    task TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE labels (
    dataset_id TEXT NOT NULL REFERENCES datasets (id),
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (dataset_id, name)
);

CREATE TABLE images (
    id TEXT PRIMARY KEY,
    dataset_id TEXT NOT NULL REFERENCES datasets (id),
    sha256 TEXT NOT NULL,
    label TEXT NOT NULL,
    status TEXT NOT NULL,
    format TEXT NOT NULL,
    bytes BIGINT NOT NULL,
    width BIGINT NOT NULL,
    height BIGINT NOT NULL,
    filename TEXT NOT NULL,
    uploader TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    reviewed_at BIGINT,
    reviewed_by TEXT,
    UNIQUE (dataset_id, sha256)
);
CREATE INDEX images_by_status ON images (dataset_id, status, reviewed_at);
CREATE INDEX images_by_sha ON images (sha256);

CREATE TABLE runs (
    id TEXT PRIMARY KEY,
    dataset_id TEXT NOT NULL REFERENCES datasets (id),
    task TEXT NOT NULL,
    params TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT NOT NULL,
    progress TEXT,
    epochs TEXT NOT NULL,
    error TEXT,
    snapshot_id TEXT,
    images BIGINT,
    model_id TEXT,
    worker TEXT,
    cancel_requested BIGINT NOT NULL DEFAULT 0,
    attempts BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    started_at BIGINT,
    heartbeat_at BIGINT,
    finished_at BIGINT
);
CREATE INDEX runs_queue ON runs (status, created_at);

CREATE TABLE models (
    id TEXT PRIMARY KEY,
    dataset_id TEXT NOT NULL REFERENCES datasets (id),
    task TEXT NOT NULL,
    run_id TEXT,
    stage TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    bytes BIGINT NOT NULL,
    manifest TEXT NOT NULL,
    gate TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    promoted_at BIGINT
);
-- At most one champion per task.
CREATE UNIQUE INDEX one_champion_per_task ON models (task) WHERE stage = 'champion';

CREATE TABLE promotions (
    id TEXT PRIMARY KEY,
    task TEXT NOT NULL,
    model_id TEXT NOT NULL REFERENCES models (id),
    previous_model_id TEXT,
    reason TEXT NOT NULL,
    actor TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX promotions_by_task ON promotions (task, at);
