"""Resources: the warehouse, the landing zone, the source database and alerts."""
