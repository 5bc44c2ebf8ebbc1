"""``guardian status``'s counters run since start: a reload (SIGHUP) swaps the query
chain and its upstream objects, and the figures carry on counting instead of
starting again from zero (Prometheus would see a reset that did not happen)."""

from __future__ import annotations

from support import dig


def test_counters_survive_a_reload(make_guardian, upstream, tmp_path):
    config = (f"data_dir: {tmp_path / 'var'}\n"
              "dns:\n  allow_clients: [127.0.0.1/32]\n  upstream_timeout: 0.2\n")
    g = make_guardian([upstream.url], config)
    assert dig(g.port(), "example.com").values == ["93.184.216.34"]
    assert dig(g.port(), "example.com", source="127.0.0.2").status == "REFUSED"
    before = g.daemon.status()
    assert before["refused"]["acl"] == 1 and before["upstreams"][0]["answered"] == 1
    g.call(g.daemon.reload(g.settings))
    assert dig(g.port(), "example.org").status in ("NOERROR", "NXDOMAIN")
    assert dig(g.port(), "example.com", source="127.0.0.2").status == "REFUSED"
    after = g.daemon.status()
    assert after["refused"]["acl"] == 2
    [u] = after["upstreams"]
    assert (u["answered"], sum(u["rtt_buckets"])) == (2, 2)
    assert u["rtt_sum_ms"] >= before["upstreams"][0]["rtt_sum_ms"]


def test_query_counters_survive_new_listeners(make_guardian, upstream, tmp_path):
    import dataclasses

    g = make_guardian([upstream.url], f"data_dir: {tmp_path / 'var'}\ndns:\n  upstream_timeout: 0.2\n")
    assert dig(g.port(), "example.com").values == ["93.184.216.34"]
    assert g.daemon.status()["queries"]["udp_queries"] == 1
    moved = dataclasses.replace(g.settings, dns=dataclasses.replace(g.settings.dns, listen=(("127.0.0.1", 0),)))
    g.call(g.daemon.reload(moved))  # new listeners, a new server object
    assert dig(g.port(), "example.com").values == ["93.184.216.34"]
    queries = g.daemon.status()["queries"]
    assert queries["udp_queries"] == 2
    assert dig(g.port(), "example.com").values == ["93.184.216.34"]  # a repeat: from the packet cache
    assert g.daemon.status()["queries"]["packet_reuses"] >= queries["packet_reuses"]
