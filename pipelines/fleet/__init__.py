"""Fleet mode: PostgreSQL as the store, procrastinate workers for the cycles, limits held across processes."""
