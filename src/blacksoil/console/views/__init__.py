"""One module per console view; each exposes `collect(ctx, tenant) -> dict` of cards, charts and tables.

Numbers shown are exactly what the pillars' own APIs return, so the browser tests can compare them.
"""
