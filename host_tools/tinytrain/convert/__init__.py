"""Converters from other model formats into a QGraph."""
