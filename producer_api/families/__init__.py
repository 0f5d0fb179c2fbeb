"""Front doors of the seed-compatible API families: thin adapters over `ingest.entry`."""
