"""Helpers of tests/test_multihost.py: hosts made of network namespaces, and what runs on them."""
