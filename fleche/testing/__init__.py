"""Test helpers shipped with fleche, so third-party backends can run the same suite."""
