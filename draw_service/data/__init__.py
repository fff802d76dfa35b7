"""Data: sources → uint8 arrays (sources.py), arrays → float batches (batches.py), Parquet shards (shards.py)."""
