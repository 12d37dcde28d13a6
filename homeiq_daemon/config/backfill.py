"""Settings of the backfill from Home Assistant's recorder (``[home_assistant.backfill]``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class BackfillSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    """On every start and reconnect, fetch what changed while the daemon was away from HA's recorder."""
    max_age_s: float = Field(default=86_400.0, gt=0, le=90 * 86_400)
    """Oldest history a backfill fetches; an older gap is reported (import it with ``homeiq import-history``).
    Keep it within the recorder's ``purge_keep_days`` (10 days by default)."""
    commit_wait_s: float = Field(default=6.0, ge=0, le=600)
    """The last window is read this long after live events started: HA's recorder commits every
    ``commit_interval`` (5 s by default), and what it has not committed yet is not in its answers."""
    entities_per_request: int = Field(default=100, ge=1, le=5_000)
    window_s: float = Field(default=300.0, gt=0, le=30 * 86_400)
    """First time window of a request; it shrinks or grows so one answer holds about ``states_per_request``."""
    max_window_s: float = Field(default=21_600.0, gt=0, le=30 * 86_400)
    """Longest time window of a request, however quiet the history before it was: the first answer after a
    quiet stretch holds at most this much of a busy one."""
    states_per_request: int = Field(default=5_000, ge=100, le=200_000)
    request_timeout_s: float = Field(default=60.0, gt=0, le=3_600)
    watermark_save_interval_s: float = Field(default=300.0, ge=1, le=86_400)
    """How often the watermarks file in the state directory is rewritten when it changed (and at stop)."""
