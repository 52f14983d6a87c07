"""Upstream version detection: one small module per source kind."""
