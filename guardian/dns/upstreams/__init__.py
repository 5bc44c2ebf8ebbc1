"""Upstream resolvers: plain UDP/TCP (udp, stream), DNS over TLS (stream), DNS over HTTPS
(doh, imported only by the factory when configured), the failover pool, and what they share
(base). Import the module you need; this package imports nothing on its own, so aiohttp
stays out of a house without DoH."""
