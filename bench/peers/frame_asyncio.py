# SPDX-License-Identifier: MIT
"""Framed TCP echo server on asyncio streams, a peer for bench/run.

Each message is a big-endian length prefix (2 or 4 bytes) and its payload; the server
reads them the idiomatic way (readexactly the prefix, then the payload) and writes each
message back unchanged, then drains, in order. `--uvloop` runs the same code on uvloop.

    /usr/bin/python3 bench/peers/frame_asyncio.py [--host 127.0.0.1] [--port 11101]
        [--prefix-bytes 2|4] [--uvloop]

SIGINT or SIGTERM closes every connection and exits 0.
"""

import argparse
import asyncio
import signal


async def serve(host, port, prefix_bytes):
    writers = set()

    async def echo(reader, writer):
        writers.add(writer)
        try:
            while True:
                prefix = await reader.readexactly(prefix_bytes)
                payload = await reader.readexactly(int.from_bytes(prefix, "big"))
                writer.write(prefix + payload)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writers.discard(writer)
            writer.close()

    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set_result, None)
    server = await asyncio.start_server(echo, host, port)
    await stop
    # NOTE: the connections first: from Python 3.12 on, wait_closed() waits for them.
    server.close()
    for writer in list(writers):
        writer.close()
    await asyncio.wait_for(server.wait_closed(), 1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=11101)
    parser.add_argument("--prefix-bytes", type=int, choices=(2, 4), default=2)
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop")
    args = parser.parse_args()
    if args.uvloop:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    asyncio.run(serve(args.host, args.port, args.prefix_bytes))


if __name__ == "__main__":
    main()
