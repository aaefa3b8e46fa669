"""One adapter per library, each running the same three workloads (see base.py).

``PEERS`` is the order of the table: notifyq first, then the peers, then the raw floor.
Each name maps to the module in this package that implements it.
"""

PEERS: dict[str, str] = {
    "notifyq": "notifyq_adapter",
    "celery": "celery",
    "rq": "rq",
    "arq": "arq",
    "saq": "saq",
    "dramatiq": "dramatiq",
    "huey": "huey",
    "taskiq": "taskiq",
    "streaq": "streaq",
    "bullmq": "bullmq",
    "raw": "raw",
}
