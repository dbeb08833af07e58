"""View quality as DA IC-GAN measured it: per-class FID / KID, NN corruption, soft labels, an independent score, diversity.

Exports resolve lazily: the tables and rules (no torch) serve `inspect` and the trainer client,
the measuring code loads torch, torchmetrics and the networks only when it runs.
"""

from __future__ import annotations

from genview._lazy import lazy_exports

_EXPORTS = {
    "QualitySpec": "genview.quality.run",
    "QualityReport": "genview.quality.run",
    "measure_quality": "genview.quality.run",
    "DA_ICGAN_RULE": "genview.quality.rules",
    "parse_rules": "genview.quality.rules",
    "excluded_labels": "genview.quality.rules",
    "read_classes": "genview.quality.tables",
    "read_views": "genview.quality.tables",
    "read_sources": "genview.quality.tables",
    "read_settings": "genview.quality.tables",
}

__getattr__ = lazy_exports(__name__, _EXPORTS)

__all__ = sorted(_EXPORTS)
