"""Builders: one plan job in, one pushed single-platform image out."""
