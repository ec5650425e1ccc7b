"""Counters and histograms for /metrics (Prometheus text format). One registry per server process."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# Request → accepted, in seconds: emergencies are measured in tens of seconds, routine cases in tens of minutes.
PAIRING_BUCKETS = (5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.offers = Counter("teleconsult_pairing_offers", "Offers rung to specialists.", ["urgency"], registry=r)
        self.offer_timeouts = Counter(
            "teleconsult_pairing_offer_timeouts", "Offers not answered before their deadline.", ["urgency"], registry=r
        )
        self.offer_declines = Counter(
            "teleconsult_pairing_offer_declines", "Offers declined by the specialist.", ["urgency"], registry=r
        )
        self.escalations = Counter(
            "teleconsult_pairing_escalations", "Requests handed to a coordinator: nobody left.", ["urgency"], registry=r
        )
        self.accepts = Counter(
            "teleconsult_pairing_accepts", "Requests accepted by a specialist.", ["urgency"], registry=r
        )
        self.pairing_seconds = Histogram(
            "teleconsult_pairing_seconds",
            "Time from a request to its acceptance.",
            ["urgency"],
            buckets=PAIRING_BUCKETS,
            registry=r,
        )
        self.connections = Gauge("teleconsult_connections", "Socket.IO connections on this process.", registry=r)
        self.rooms = Gauge("teleconsult_rooms", "Consultation rooms with someone in them on this process.", registry=r)
        self.queued = Gauge(
            "teleconsult_pairing_queued", "Open requests waiting for a specialist (whole cluster).", registry=r
        )

    def watch(self, connections: Callable[[], float], rooms: Callable[[], float]) -> None:
        self.connections.set_function(connections)
        self.rooms.set_function(rooms)

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))
