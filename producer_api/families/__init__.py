"""Front doors of the seed-compatible API families: thin adapters over `producer_api.accept`."""
