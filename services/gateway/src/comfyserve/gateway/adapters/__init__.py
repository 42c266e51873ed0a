"""Clients of the services the gateway calls, behind Protocols."""
