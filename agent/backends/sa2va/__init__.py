"""The Sa2VA backend: official checkpoints, transformers VLM + `sam2` SAM 2, no remote code."""
