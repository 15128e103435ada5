"""The reference clients (naive, ceiling) and the drivers of snapcrawl the suite and the studies run."""
