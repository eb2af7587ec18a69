"""World back ends of the env: ``full`` (HTTP search, downloads, training) and ``frozen`` (precomputed)."""
