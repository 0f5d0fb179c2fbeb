-- Dead letters that heal (issue 17 part 3): a replay job is either a replay by filter
-- (`replay`, as before) or the heal of one data-contract subject (`heal`): it replays the
-- subject's pending dead letters that pass its current version and refreshes the rest's
-- reasons against it (ingest/heal.py). The subject itself is kept in the job's `filter`.
--
-- depends: 0002_dead_letters

ALTER TABLE replay_jobs
    ADD COLUMN kind text NOT NULL DEFAULT 'replay' CHECK (kind IN ('replay', 'heal'));
