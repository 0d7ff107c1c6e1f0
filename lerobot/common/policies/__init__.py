"""Policies: networks that map observations to actions, with their configs, normalisation and checkpoints.

Build one with `factory.make_policy("act", dataset_stats=...)`, load one with `factory.load_policy(path)`.
Policy modules are imported lazily (see `factory.POLICIES`), so importing this package stays cheap.
"""
