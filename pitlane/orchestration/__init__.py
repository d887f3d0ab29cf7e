"""Orchestration: the default recipe (collect -> train -> gate) and the end-to-end demo, above every domain."""
