"""A scriptable DNS server on loopback, standing in for upstream resolvers in tests.

Answers over UDP and TCP from a small zone (dnslib builds the answers; speed does not
matter here). Behaviours can be switched per test: stay silent, answer slowly, send
SERVFAIL, truncate over UDP, or send spoofed replies (wrong ID / question) first.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from typing import Any

from dnslib import AAAA, CNAME, QTYPE, RCODE, RR, SOA, A, DNSError, DNSRecord


def serve_in_thread(serve: Any) -> tuple[asyncio.AbstractEventLoop, threading.Thread]:
    """Run ``serve()`` (which starts servers) on a new loop in a daemon thread; return once it has."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()

    def main() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(serve())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    if not ready.wait(10):
        raise TimeoutError("the fake server did not start")
    return loop, thread


@dataclass
class Behaviour:
    silent: bool = False
    delay: float = 0.0
    servfail: bool = False
    truncate_udp: bool = False
    spoof_first: bool = False
    ttl: int = 300


@dataclass
class FakeDns:
    """Zone: name -> list of (type, value); names not in it get NXDOMAIN with a SOA."""

    zone: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    behaviour: Behaviour = field(default_factory=Behaviour)
    host: str = "127.0.0.1"
    port: int = 0
    queries: list[tuple[str, str, str]] = field(default_factory=list)  # (transport, name, type)
    # name -> a function of the query's bytes giving the reply's bytes (None: stay silent)
    replies: dict[str, Any] = field(default_factory=dict)
    senders: list[tuple[str, int]] = field(default_factory=list)  # (address, port) of each UDP query

    def answer(self, data: bytes, transport: str) -> bytes | None:
        try:
            request = DNSRecord.parse(data)
        except DNSError:  # a label dnslib cannot read (not UTF-8): NXDOMAIN, as a real resolver answers
            self.queries.append((transport, "<unreadable>", "?"))
            return data[:2] + b"\x81\x83" + data[4:6] + b"\x00\x00\x00\x00\x00\x00" + data[12:]
        q = request.q
        name = str(q.qname).rstrip(".").lower()
        self.queries.append((transport, name, QTYPE[q.qtype]))
        if name in self.replies:
            out: bytes | None = self.replies[name](data)
            return out
        b = self.behaviour
        reply = request.reply()
        if b.servfail:
            reply.header.rcode = RCODE.SERVFAIL
            return reply.pack()
        records = self.zone.get(name)
        if records is None and not name.startswith("big"):
            reply.header.rcode = RCODE.NXDOMAIN
            reply.add_auth(RR(".", QTYPE.SOA, ttl=3600, rdata=SOA("a.root.", "b.root.", (1, 2, 3, 4, 60))))
            return reply.pack()
        if name.startswith("big"):
            records = [("A", f"11.0.{i // 250}.{i % 250 + 1}") for i in range(100)]
        for rtype, value in records or []:
            rdata: Any = {"A": A, "AAAA": AAAA, "CNAME": CNAME}[rtype](value)
            if rtype == QTYPE[q.qtype] or rtype == "CNAME":
                reply.add_answer(RR(q.qname, getattr(QTYPE, rtype), ttl=b.ttl, rdata=rdata))
        if not reply.rr and records:
            reply.add_auth(RR(".", QTYPE.SOA, ttl=3600, rdata=SOA("a.root.", "b.root.", (1, 2, 3, 4, 60))))
        return reply.pack()

    # -- running in a thread of its own --------------------------------------------

    def start(self) -> FakeDns:
        self._loop, self._thread = serve_in_thread(self._serve)
        return self

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        fake = self

        class Udp(asyncio.DatagramProtocol):
            def connection_made(self, transport: Any) -> None:
                self.transport = transport

            def datagram_received(self, data: bytes, addr: Any) -> None:
                fake.senders.append((addr[0], addr[1]))
                loop.create_task(self.respond(data, addr))

            async def respond(self, data: bytes, addr: Any) -> None:
                b = fake.behaviour
                if b.silent:
                    fake.answer(data, "udp")
                    return
                if b.delay:
                    await asyncio.sleep(b.delay)
                out = fake.answer(data, "udp")
                if out is None:
                    return
                if b.spoof_first:
                    wrong_id = bytes([out[0] ^ 0xFF, out[1]]) + out[2:]
                    self.transport.sendto(wrong_id, addr)
                    other = DNSRecord.question("evil.example").reply()
                    other.header.id = DNSRecord.parse(data).header.id
                    other.add_answer(RR("evil.example", QTYPE.A, ttl=999, rdata=A("6.6.6.6")))
                    self.transport.sendto(other.pack(), addr)
                if b.truncate_udp:
                    rec = DNSRecord.parse(out)
                    rec.rr = []
                    rec.header.tc = 1
                    out = rec.pack()
                self.transport.sendto(out, addr)

        chosen = self.port

        async def tcp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while True:
                    size = int.from_bytes(await reader.readexactly(2), "big")
                    data = await reader.readexactly(size)
                    if fake.behaviour.silent:
                        fake.answer(data, "tcp")
                        continue
                    if fake.behaviour.delay:
                        await asyncio.sleep(fake.behaviour.delay)
                    out = fake.answer(data, "tcp")
                    if out:
                        writer.write(len(out).to_bytes(2, "big") + out)
                        await writer.drain()
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            finally:
                writer.close()

        for _attempt in range(50):
            transport, _ = await loop.create_datagram_endpoint(Udp, local_addr=(self.host, chosen))
            self.port = transport.get_extra_info("sockname")[1]
            try:  # the same port over TCP: an OS-chosen UDP port may be taken over TCP (a client's port)
                self._tcp = await asyncio.start_server(tcp, self.host, self.port)
                break
            except OSError:
                transport.close()
                if chosen:
                    raise

    def stop(self) -> None:
        async def shutdown() -> None:
            self._tcp.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"udp://{host}:{self.port}"


class EncryptedFakeDns:
    """DoT (RFC 7858) and DoH (RFC 8484) front ends for a FakeDns, with a test CA."""

    def __init__(self, fake: FakeDns, tmp_dir: Any) -> None:
        import trustme

        self.fake = fake
        self.ca = trustme.CA()
        cert = self.ca.issue_cert("dns.test", "127.0.0.1")
        self.ca_file = str(tmp_dir / "ca.pem")
        self.ca.cert_pem.write_to_path(self.ca_file)
        import ssl

        self.ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(self.ssl)
        self.dot_port = 0
        self.doh_port = 0
        self.connections = {"dot": 0, "doh": 0}
        self.doh_requests = 0
        self.doh_peers: set[Any] = set()  # one source port per client connection

    def start(self) -> EncryptedFakeDns:
        self._loop, self._thread = serve_in_thread(self._serve)
        return self

    async def _serve(self) -> None:
        from aiohttp import web

        fake = self.fake
        outer = self

        async def dot(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            outer.connections["dot"] += 1
            try:
                while True:
                    size = int.from_bytes(await reader.readexactly(2), "big")
                    out = fake.answer(await reader.readexactly(size), "dot")
                    if out and not fake.behaviour.silent:
                        writer.write(len(out).to_bytes(2, "big") + out)
                        await writer.drain()
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            finally:
                writer.close()

        self._dot = await asyncio.start_server(dot, "127.0.0.1", 0, ssl=self.ssl)
        self.dot_port = self._dot.sockets[0].getsockname()[1]

        async def doh(request: web.Request) -> web.Response:
            outer.doh_requests += 1
            if request.transport is not None:
                outer.doh_peers.add(request.transport.get_extra_info("peername"))
                outer.connections["doh"] = len(outer.doh_peers)
            if request.content_type != "application/dns-message":
                return web.Response(status=415)
            out = fake.answer(await request.read(), "doh")
            return web.Response(body=out, content_type="application/dns-message")

        app = web.Application()
        app.router.add_post("/dns-query", doh)
        self._runner = web.AppRunner(app)
        await self._runner.setup()

        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self.ssl)
        await site.start()
        self.doh_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def stop(self) -> None:
        async def shutdown() -> None:
            self._dot.close()
            await self._runner.cleanup()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
