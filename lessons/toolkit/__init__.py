"""The toolkit: shared pieces that lessons, the capstone and the exercises stand on.

It imports nothing from `lessons` outside this package and nothing from `capstone`,
so any layer above may use it (docs/architecture.md draws the layers).
"""
