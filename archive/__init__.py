"""The archive contract between the collector and the history server: layout, documents, storage.

FORMAT.md describes it; layout.py builds and parses every key.
"""
