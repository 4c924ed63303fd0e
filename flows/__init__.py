"""Prefect flows composing the tasks in tasks/."""

import os

# Route the library's progress logs into Prefect's run logs as well as the console, and keep the
# temporary local server from trying to reach the internet.
os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "cxr")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")
# The first temporary server on a machine creates and migrates Prefect's database: 22-36 s measured
# here, past Prefect's 20 s default, so a flow on a machine that never ran Prefect could time out.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
