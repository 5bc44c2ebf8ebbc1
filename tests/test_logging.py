"""The journal at the default level: the real daemon under a few hundred queries, hostile
names among them (control characters, ANSI escapes, newlines, a fake log line), writes no
line per query and never lets a name a device controls into the log unescaped."""

from __future__ import annotations

import os
import random
import re
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

from support import dig, free_port

GUARDIAN = [sys.executable, "-m", "guardian"]
HOSTILE = [b"\x1b[31mred", b"line\nbreak", b"cr\rreturn", b"bell\x07", b"\x1b]0;owned\x07", b"nul\x00byte",
           b"fake\nguardian: ERROR hacked", b"tab\there", b"\xff\xfe", b"%s%n%d", b"{0}{1}"]


def query(name_labels: list[bytes], qid: int) -> bytes:
    wire = b"".join(bytes([len(label)]) + label for label in name_labels) + b"\x00"
    return struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + wire + struct.pack("!HH", 1, 1)


def test_no_per_query_lines_and_no_raw_control_text_in_the_log(tmp_path, upstream):
    port = free_port()
    cfg = tmp_path / "guardian.yaml"
    cfg.write_text(f"data_dir: ./var\ndashboard: {{enabled: false}}\ndns:\n  listen: ['127.0.0.1:{port}']\n"
                   f"  upstreams: ['{upstream.url}']\nstore:\n  flush_seconds: 0.2\n"
                   "household:\n  profiles:\n    - {name: Kid, template: Young child, deny: [kids.example]}\n"
                   "  default_profile: Kid\n")
    log = tmp_path / "journal.txt"
    with log.open("wb") as out:
        proc = subprocess.Popen([*GUARDIAN, "run", "--config", str(cfg)], stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            deadline = time.monotonic() + 20
            while dig(port, "example.com").status != "NOERROR":
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
            time.sleep(1)
            started = len(log.read_bytes().splitlines())
            rng = random.Random(13)
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.settimeout(2)
            sent = 0
            for i in range(300):
                hostile = HOSTILE[i % len(HOSTILE)]
                labels = {0: [hostile, b"example", b"com"], 1: [hostile, b"kids", b"example"],
                          2: [b"www", b"example", b"com"], 3: [bytes(rng.randrange(1, 256) for _ in range(20)),
                                                           b"example"]}[i % 4]
                sock.sendto(query(labels, i), ("127.0.0.1", port))
                sent += 1
                try:
                    sock.recvfrom(4096)
                except TimeoutError:
                    pass
            sock.close()
            assert dig(port, "kids.example").status in ("NOERROR", "NXDOMAIN")
            time.sleep(2)  # the store's flush and any late line
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    raw = log.read_bytes()
    lines = raw.splitlines()
    during = lines[started:]
    text = "\n".join(line.decode("utf-8", "replace") for line in during)
    # Nothing per query: 300 queries, only a handful of lines (start-up, shutdown, a warning).
    assert len(during) <= 20, text
    assert not re.search(r"kids\.example|example\.com", text), text
    # Whatever a device sent never reaches the journal raw: no control character but the newline
    # ending each line, no line a device forged.
    for line in lines:
        assert not re.search(rb"[\x00-\x08\x0b-\x1f\x7f]", line), line
        assert b"hacked" not in line or b"\\n" in line, line
    assert sent == 300 and proc.returncode == 0, raw.decode("utf-8", "replace")[-2000:]


def test_hostile_config_values_are_escaped_in_the_errors(tmp_path):
    # Values echoed in check-config's FILE:LINE errors (what the journal shows when the
    # daemon refuses to start) are escaped too.
    cfg = tmp_path / "guardian.yaml"
    cfg.write_text('data_dir: ./var\ndns:\n  listen: ["127.0.0.1:1\\e[31m\\nERROR forged"]\n'
                   '  upstreams: ["udp://\\e]0;owned\\a127.0.0.1"]\n')
    result = subprocess.run([*GUARDIAN, "check-config", "--config", str(cfg)], capture_output=True, timeout=60)
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert not re.search(rb"[\x00-\x08\x0b-\x1f\x7f]", out), out
    assert b"\nERROR" not in out, out
    assert Path(cfg).is_file()
