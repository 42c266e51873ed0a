"""The Comfy API v2 surface (`/api/v2`), as /work/shared/API.md Part A defines it."""
