"""The `sam3` backend: SAM 3 through transformers' own classes (spec.py loads it)."""
