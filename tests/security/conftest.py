"""The gateway's fixtures, for the tests here that run a gateway."""

from ..gateway.conftest import client, gateway, gw

__all__ = ["client", "gateway", "gw"]
