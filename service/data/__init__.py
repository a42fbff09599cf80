"""Customer data in: records and their checks (`records`), CSV and JSON Lines readers
(`readers`), bulk and API ingest (`ingest`), the per-customer order rollups (`rollups`) and
the demo data generator (`demo_data`). Imports `db` and the base modules."""
