"""Serving-time building blocks: item-vector indexes for top-k retrieval."""
