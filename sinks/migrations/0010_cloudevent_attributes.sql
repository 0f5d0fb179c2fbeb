-- A CloudEvent's attributes Sluice has no column for (issue 18): specversion,
-- datacontenttype, dataschema, data_base64 for data that is not JSON, and its extension
-- attributes under "extensions" (schemas/cloudevents.py). NULL for every other event, so
-- adding it rewrites nothing.
--
-- depends: 0001_initial

ALTER TABLE events ADD COLUMN attributes jsonb;
