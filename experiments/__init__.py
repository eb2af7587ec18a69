"""Experiments: entry points that run and compare query policies (installed as ``ie_env.experiments``)."""
