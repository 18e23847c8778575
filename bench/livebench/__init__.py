"""Pieces of the live-update latency benchmark (``bench/live.py``)."""
