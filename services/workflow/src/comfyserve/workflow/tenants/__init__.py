"""Tenants as the workflow service sees them: their quotas on running and
queued jobs, and their usage."""
