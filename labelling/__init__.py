"""Label Studio integration (server lifecycle, push/pull, QC, aggregation). Not built yet."""
