"""Abuse protection: GCRA rate limits per principal and route class, and the
suspended tenants every gateway refuses writes for."""
