"""``python -m guardian.discovery``: run discovery alone for a while (tests, field checks).

Prints ``ready`` once started, then, when stopped (SIGTERM/SIGINT or ``--seconds``),
one JSON object: devices, new-device and bypass events, problems, capture counters.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from pathlib import Path
from typing import Any

from ..config import DiscoverySettings
from .service import Discovery


async def _main(args: argparse.Namespace) -> dict[str, Any]:
    events: list[dict[str, Any]] = []

    def new_device(*, mac: str | None, ip: str | None, name: str | None, detail: str) -> None:
        events.append({"kind": "new-device", "mac": mac, "ip": ip, "name": name, "detail": detail})

    def bypass(mac: str, ip: str, detail: str) -> None:
        events.append({"kind": "bypass", "mac": mac, "ip": ip, "detail": detail})

    settings = DiscoverySettings(tuple(args.interface), not args.no_passive, 0)
    discovery = Discovery(settings, Path(args.data_dir), new_device, bypass, tick=0.2,
                          neighbour_seconds=args.neighbour_seconds, flush_seconds=args.flush_seconds, sweep_rate=args.sweep_rate)
    await discovery.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("ready", flush=True)
    swept = None
    if args.sweep:
        swept = await discovery.sweep()
        print(f"swept {swept}", flush=True)
    try:
        await asyncio.wait_for(stop.wait(), args.seconds)
    except TimeoutError:
        pass
    await discovery.stop()
    return {"devices": discovery.devices(), "events": events, "problems": discovery.problems,
            "health": discovery.health(), "swept": swept}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m guardian.discovery", description=__doc__)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--interface", "-i", action="append", default=[])
    parser.add_argument("--no-passive", action="store_true")
    parser.add_argument("--sweep", action="store_true", help="one ARP sweep at start")
    parser.add_argument("--sweep-rate", type=float, default=100.0, help="ARP requests per second")
    parser.add_argument("--seconds", type=float, default=3600.0)
    parser.add_argument("--flush-seconds", type=float, default=0.5)
    parser.add_argument("--neighbour-seconds", type=float, default=1.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    result = asyncio.run(_main(args))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
