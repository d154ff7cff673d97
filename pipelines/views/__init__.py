"""Read models: what the pages, the CLI's reads and the digest show; they never write."""
