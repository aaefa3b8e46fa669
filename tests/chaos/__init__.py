"""The chaos run: ``python -m tests.chaos`` (docs/chaos.md).

A real server, producers, workers, a named listener, a gateway and WebSocket clients, each
its own process; workers, the listener, the gateway and the server itself are killed while
jobs flow; afterwards the logs of every process and the server's final state are checked
against the guarantees: nothing acknowledged is lost, nothing runs twice at once, every
job has one end and every observer is told of it.
"""
