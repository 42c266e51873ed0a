"""Who is calling: principals, the authenticator that produces them
(`principal.py`), and the guard every route depends on (`dependencies.py`)."""
