"""The process layer of the one server: its state, the scheduler and the webhook inbox."""
