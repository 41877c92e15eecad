"""One chat room served by several server processes (nodes) through NATS JetStream.

- `events`: what goes through the room's stream (JOINED, MESSAGE, LEFT, ANNOUNCE as JSON)
  and how a name becomes a key of the names bucket. Pure.
- `backend`: `ClusterRoom`, the room whose order is the stream's: it keeps the local rules
  (framing, validation, rate limits, join timeout) and hands every room event to the broker.
- `broker`: the NATS client on its own asyncio loop in a thread; it claims names, keeps
  their leases, publishes, consumes the stream in order and wakes the server's loop.

docs/scale-out.md (`learn show scale-out`) tells why it is built this way.
"""
