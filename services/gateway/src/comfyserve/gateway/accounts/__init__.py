"""The `/auth` routes and the JWKS: users, sessions and API keys, by AuthService."""
