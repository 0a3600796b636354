"""The core process: jobs in, frames out, over the bridge protocol.

``session.Session`` handles one client connection (templates, fit and replay
jobs, pins/pause/resume/cancel); ``cli`` is ``likeness serve``. Socket
plumbing and the wire format live in ``bridge``.
"""
