"""Concepts: the WordNet noun vocabulary, its cached text embeddings and the ``ie-vocab`` CLI."""
