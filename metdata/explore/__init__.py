"""Stage 3, exploration: the report's counts and figures written as ``report.html``."""
