-- Each API key remembers which server secret hashed it, so SLUICE_KEY_SECRET can rotate.
--
-- Keys stored so far were all hashed with the one SLUICE_KEY_SECRET, whose id is
-- SLUICE_KEY_SECRET_ID's default, '1'. To rotate: set the new secret with a new id and
-- keep the old one in SLUICE_KEY_SECRETS_RETIRED (`1=<old secret>`); each key verified
-- with a retired secret is hashed again with the current one (the API's UPDATE on
-- api_keys, migration 0013), and `sluice keys list` shows which keys still need the old.
-- `sluice_find_api_key` returns the whole row, this column included.
--
-- depends: 0004_row_level_security 0013_least_privilege

ALTER TABLE api_keys ADD COLUMN secret_id text NOT NULL DEFAULT '1';
