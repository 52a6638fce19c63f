"""negationclip: make CLIP models understand negation.

Stages, data flowing one way: ``data`` -> ``generate`` -> ``train`` -> ``evaluate`` -> ``apps``,
with ``models`` (load, convert, encode) under all of them.
"""

__version__ = "0.1.0"
