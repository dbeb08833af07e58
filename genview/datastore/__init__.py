"""The store format: source listing, shard writer (atomic commit), manifest, reader, verify. No torch here."""

from genview.datastore.layout import sample_key, shard_name
from genview.datastore.manifest import MANIFEST_SCHEMA
from genview.datastore.sources import SourceError, assign_shards, list_sources
from genview.datastore.store import Store, StoreError

__all__ = [
    "MANIFEST_SCHEMA",
    "SourceError",
    "Store",
    "StoreError",
    "assign_shards",
    "list_sources",
    "sample_key",
    "shard_name",
]
