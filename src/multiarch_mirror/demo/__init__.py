"""The demo: a real `sync` of a bundled catalog against a local upstream, into an OCI layout."""
