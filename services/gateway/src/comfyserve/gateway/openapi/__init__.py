"""The OpenAPI document: the error answers each route lists, and its finishing."""
