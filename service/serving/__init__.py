"""The serving of one model version: its image and tensor pipelines, batchers, lifecycle and warm-up."""
