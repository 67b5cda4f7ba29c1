"""`python tcp_relay.py HOST PORT`: join stdin/stdout to a TCP connection (an SSH ProxyCommand).

Ray's cluster launcher has no SSH port setting, so the end-to-end test reaches its sshd, which
listens on a free port, through `auth.ssh_proxy_command` (netcat is not assumed installed).
"""

import socket
import sys
import threading


def main(host: str, port: int) -> None:
    """Copy stdin to the socket and the socket to stdout until both sides are done."""
    conn = socket.create_connection((host, port))

    def upstream() -> None:
        while data := sys.stdin.buffer.read1(65536):
            conn.sendall(data)
        conn.shutdown(socket.SHUT_WR)

    threading.Thread(target=upstream, daemon=True).start()
    while data := conn.recv(65536):
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
