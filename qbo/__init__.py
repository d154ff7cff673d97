"""Everything that knows QuickBooks Online's wire format: client, faults, OAuth, tokens and the local sandbox."""

__all__: list[str] = []
