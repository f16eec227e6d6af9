"""Operating the platform: the Prometheus exporter, backups and restores."""
