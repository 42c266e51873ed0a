"""`/admin`: tenants with their usage, suspension, quotas and any key's revocation."""
