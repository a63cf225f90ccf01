"""A WebSocket client for the end-to-end tests (Debian's python3-websockets): connects to URL through
ADDR (host:port), sends each MESSAGE and prints each reply on a line; `--idle S` waits S seconds after the
last reply and prints CLOSED if the server closed the connection meanwhile, else OPEN.

Usage: ws_echo.py URL ADDR [--ca FILE] [--idle S] MESSAGE...
"""
import argparse
import asyncio
import ssl
import urllib.parse

import websockets


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("addr")
    ap.add_argument("--ca")
    ap.add_argument("--idle", type=float)
    ap.add_argument("messages", nargs="*")
    a = ap.parse_intermixed_args()
    host, port = a.addr.rsplit(":", 1)
    kw = {"host": host, "port": int(port), "open_timeout": 5, "ping_interval": None}
    if a.url.startswith("wss:"):
        kw["ssl"] = ssl.create_default_context(cafile=a.ca)
        kw["server_hostname"] = urllib.parse.urlsplit(a.url).hostname
    async with websockets.connect(a.url, **kw) as ws:
        for m in a.messages:
            await ws.send(m)
            print(await asyncio.wait_for(ws.recv(), 5), flush=True)
        if a.idle is not None:
            try:
                await asyncio.wait_for(ws.recv(), a.idle)
                print("MESSAGE", flush=True)
            except asyncio.TimeoutError:
                print("OPEN", flush=True)
            except websockets.ConnectionClosed:
                print("CLOSED", flush=True)


asyncio.run(main())
