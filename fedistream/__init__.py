"""fedistream: a single-user, ActivityPub-federated microblog."""

__version__ = "0.1.0"
