"""The ways data moves between actor and learner: the ZeroMQ wire (messages, codec, links) and recorded
episode datasets on disk. Nothing here imports torch."""
