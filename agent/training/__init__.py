"""Fine-tuning Sa2VA: synthetic referring videos, data sources, the trainable model, the loop, export."""
