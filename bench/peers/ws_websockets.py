# SPDX-License-Identifier: MIT
"""WebSocket echo server on Python's `websockets` (asyncio API), a peer for bench/run.

Each message is sent back as it came, text as text and binary as binary, in order. The
options match adieu-server's defaults where they differ from the library's: no
permessage-deflate (adieu declines it), messages up to 16 MiB, no keepalive pings.

    /usr/bin/python3 bench/peers/ws_websockets.py [--host 127.0.0.1] [--port 9102]

SIGINT or SIGTERM closes every connection (1001) and exits 0.
"""

import argparse
import asyncio
import signal

import websockets

MAX_MESSAGE = 16 * 1024 * 1024


async def echo(ws, _path=None):
    # `_path`: websockets 10.x still passes it to handlers that take two arguments.
    try:
        async for message in ws:
            await ws.send(message)
    except websockets.ConnectionClosed:
        pass


async def serve(host, port):
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    async with websockets.serve(
        echo,
        host,
        port,
        compression=None,
        max_size=MAX_MESSAGE,
        ping_interval=None,
        close_timeout=1,
    ):
        await stop


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9102)
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
