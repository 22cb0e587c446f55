"""Torture tests: stores under killed writers, read-only and full file systems, tampering.

Each test asserts that no stored entry is lost, no wrong value is ever
returned and no exception reaches the user's call.  They run in CI and are
kept short (well under a minute together).
"""
