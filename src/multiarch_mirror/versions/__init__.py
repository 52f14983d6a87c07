"""Upstream version detection: sources list candidate releases, the policy keeps the stable ones.

`detect.py` runs a source and the gates for one app; `http.py` is the shared HTTP machinery
(cache, conditional requests, tokens, rate limits); each other module is one source kind.
"""
