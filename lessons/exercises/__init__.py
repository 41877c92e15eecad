"""The exercises: rebuild each lesson, and let pytest check your code.

`catalog.py` lists them; every exercise is a folder here holding `stub.py` (what the
learner starts from), `solution.py` (the reference), `check.py` (the pytest checks) and
`hints.md` (three tiers). `runner.py` runs a check isolated from everything else,
`workspace.py` keeps the learner's files and progress, `cli.py` is `learn exercise`.
"""
