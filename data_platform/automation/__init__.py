"""Sensors, declarative automation, freshness policies and alerts: the platform runs itself."""
