"""Webhooks: a tenant's endpoints, its signing secret and the delivery log."""
