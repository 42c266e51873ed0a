"""What every service's settings share: the conventions, and the fields every
service has."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["ServiceSettings", "comma_separated"]


class ServiceSettings(BaseSettings):
    """Base of each service's `Settings`: a subclass sets its `env_prefix`
    (`WORKFLOW_`, ...), so every field mirrors its variable; unknown variables
    are ignored."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    log_level: str = "info"


def comma_separated(listed: str | None) -> frozenset[str] | None:
    """A comma-separated setting as a set; None when unset or empty."""
    names = frozenset(n.strip() for n in (listed or "").split(",") if n.strip())
    return names or None
