"""Business rules as plain async functions on an `AsyncSession`: no HTTP, no `request` here."""
