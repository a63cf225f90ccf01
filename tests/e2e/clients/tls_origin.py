"""An HTTPS origin for the end-to-end tests (Python's standard library): listens on 127.0.0.1:PORT with
CERT and KEY, answers every request with 200 and a body naming NAME and the request's method, path and
X-Forwarded-Proto; prints READY once listening.

Usage: tls_origin.py PORT CERT KEY NAME
"""
import http.server
import ssl
import sys

port, cert, key, name = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def answer(self):
        length = int(self.headers.get("content-length", "0"))
        self.rfile.read(length)
        body = (
            f"origin={name}\nmethod={self.command}\npath={self.path}\n"
            f"x-forwarded-proto={self.headers.get('x-forwarded-proto', '')}\n"
        ).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_HEAD = answer

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
server.socket = context.wrap_socket(server.socket, server_side=True)
print("READY", flush=True)
server.serve_forever()
