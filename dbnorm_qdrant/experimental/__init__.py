"""Experimental parts: the NeighborRetr-style residual adapter (needs the ``torch`` extra)."""
