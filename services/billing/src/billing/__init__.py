"""billing: Billing, metering and payments: price book, ledger, balances, payments, statements."""

SERVICE = "billing"
__version__ = "0.1.0"
