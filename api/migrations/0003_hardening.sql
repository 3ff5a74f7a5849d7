-- Auto-retrain: at most one queued automatic run per dataset and task, whatever the
-- concurrency (a second concurrent insert fails on this index and is treated as "already
-- queued").
ALTER TABLE runs ADD COLUMN auto BIGINT NOT NULL DEFAULT 0;
CREATE UNIQUE INDEX one_queued_auto_run ON runs (dataset_id, task) WHERE status = 'queued' AND auto = 1;

-- Captions are reviewed like images: who sent them, and their review status. Captions stored
-- before review existed came with the seed data or with images reviewed at the time: they stay
-- approved.
ALTER TABLE captions ADD COLUMN uploader TEXT NOT NULL DEFAULT 'seed';
ALTER TABLE captions ADD COLUMN status TEXT NOT NULL DEFAULT 'approved';
ALTER TABLE captions ADD COLUMN reviewed_at BIGINT;
ALTER TABLE captions ADD COLUMN reviewed_by TEXT;
CREATE INDEX captions_by_status ON captions (status, created_at);

-- Who sent an image, as the rate limiter keys clients (a hash of the address or its /64),
-- for the per-client cap on images waiting for review.
ALTER TABLE images ADD COLUMN client TEXT NOT NULL DEFAULT '';
CREATE INDEX images_pending_by_client ON images (status, client);
