"""Exercises that practise the capstone: they live here because they stand on its codec and
room. `lessons/exercises/catalog.py` lists them (by package name, never by import)."""
