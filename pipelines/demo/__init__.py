"""The demo company, its files and history, and the `make run` launcher."""
