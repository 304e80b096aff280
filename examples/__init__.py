"""Runnable example applications (``python -m examples.gateway``)."""
