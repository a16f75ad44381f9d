# SPDX-License-Identifier: MIT
"""WebSocket echo server on aiohttp, a peer for bench/run.

Each message is sent back as it came, text as text and binary as binary, in order, on
every path (as adieu-server does). Options match adieu-server's defaults where they
differ from the library's: no permessage-deflate, messages up to 16 MiB, no access log.

    /usr/bin/python3 bench/peers/ws_aiohttp.py [--host 127.0.0.1] [--port 9103]

SIGINT or SIGTERM closes every connection (1001) and exits 0.
"""

import argparse
import weakref

from aiohttp import WSCloseCode, WSMsgType, web

MAX_MESSAGE = 16 * 1024 * 1024
SOCKETS = web.AppKey("sockets", weakref.WeakSet) if hasattr(web, "AppKey") else "sockets"


async def echo(request):
    ws = web.WebSocketResponse(compress=False, max_msg_size=MAX_MESSAGE)
    await ws.prepare(request)
    request.app[SOCKETS].add(ws)
    try:
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                await ws.send_str(msg.data)
            elif msg.type == WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
    except ConnectionError:
        pass
    finally:
        request.app[SOCKETS].discard(ws)
    return ws


async def close_sockets(app):
    # Without this, shutdown would wait for open WebSocket handlers to end on their own.
    for ws in set(app[SOCKETS]):
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9103)
    args = parser.parse_args()
    app = web.Application()
    app[SOCKETS] = weakref.WeakSet()
    app.on_shutdown.append(close_sockets)
    app.router.add_get("/{tail:.*}", echo)
    # run_app turns SIGINT and SIGTERM into a graceful exit with status 0.
    web.run_app(
        app, host=args.host, port=args.port, print=None, access_log=None, shutdown_timeout=1
    )


if __name__ == "__main__":
    main()
