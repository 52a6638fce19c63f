"""``negationclip explore``: compare models on (negated) text queries over a folder of images,
in a local web page. ``search`` and ``negation`` are plain Python (no web code); ``page``
builds the Gradio app (the optional ``[app]`` extra) and is imported only when serving."""

from .negation import REWRITES, remove_negation
from .search import Explorer, Hit, demo_sources, list_images

__all__ = ["Explorer", "Hit", "REWRITES", "demo_sources", "list_images", "remove_negation"]
