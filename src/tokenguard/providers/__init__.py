"""Vendor adapters (thin) and the generic wrapping core. Nothing here imports a vendor SDK."""
