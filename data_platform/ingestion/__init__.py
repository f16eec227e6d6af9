"""Ingestion into the raw layer: one mechanism for landing files, one for source-database tables."""
