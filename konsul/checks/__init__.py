"""Health checks (see ``konsul.checks.runner``)."""

from konsul.checks.runner import SCAN_SECONDS, CheckRunner

__all__ = ["SCAN_SECONDS", "CheckRunner"]
