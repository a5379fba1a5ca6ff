"""Data: synthetic 2D fields (`akira.data.fields`) and text corpora (`akira.data.text`).

Subpackages are imported explicitly by their users; nothing is imported here.
"""
