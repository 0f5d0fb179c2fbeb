-- Dead letters the sink itself makes: a version of `events` PostgreSQL refused to store
-- (validation keeps such versions out, but the topic is a contract other producers may
-- write to). Stage `sink` joins `door` and `stream`.
--
-- depends: 0001_initial

ALTER TABLE dead_letters DROP CONSTRAINT dead_letters_stage_check;
ALTER TABLE dead_letters
    ADD CONSTRAINT dead_letters_stage_check CHECK (stage IN ('door', 'stream', 'sink'));
