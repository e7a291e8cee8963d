"""``bridge dev``: the whole system on one machine, for development (not in the image).

Runs the embedded broker, the Bird simulator (``birdsim``) and the bridge together; see
docs/development.md.
"""
