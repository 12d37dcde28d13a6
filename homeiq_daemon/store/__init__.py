"""SQLite, owned here and nowhere else: the embedded history, and (later) metadata and the webhook outbox."""
