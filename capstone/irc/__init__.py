"""The IRC protocol adapter: IRC lines in, the room's frames out, and back (see session.py)."""
