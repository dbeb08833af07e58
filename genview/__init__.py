"""genview: offline synthetic-view generation into sharded WebDataset + Parquet stores."""

__version__ = "0.1.0"
