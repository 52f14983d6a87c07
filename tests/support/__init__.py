"""Test harness: real servers on free loopback ports, real fixture binaries."""
