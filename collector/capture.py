"""Live capture: an AF_PACKET socket with a kernel BPF filter, read in batches of raw frames.

scapy compiles the filter (libpcap underneath) in a short-lived child process and the program is
attached to a plain socket: the long-running collector never holds scapy's ~40 MB in memory.
"""
from __future__ import annotations

import ctypes
import logging
import select
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

logger = logging.getLogger(__name__)

ETH_P_ALL = 0x0003
SO_ATTACH_FILTER = 26
SOL_PACKET = 263
PACKET_STATISTICS = 6
DLT_EN10MB, DLT_IEEE802_11_RADIO = 1, 127
LAN_FILTER = "arp or (udp and dst port 67)"
MDNS_FILTER = "(udp and dst port 5353)"
PROBE_FILTER = "type mgt subtype probe-req"


class CaptureError(RuntimeError):
    """The capture cannot start: no such interface, no permission, no filter compiler."""


def compile_filter(expression: str, linktype: int = DLT_EN10MB) -> bytes:
    """The BPF program for `expression`, as the kernel's struct sock_filter array."""
    done = subprocess.run([sys.executable, "-m", "collector.capture", expression, str(linktype)],
                          capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise CaptureError(f"cannot compile the capture filter {expression!r}: {done.stderr.strip()[-300:]}")
    return bytes.fromhex(done.stdout.strip())


def attach_filter(sock: socket.socket, program: bytes) -> None:
    if not program or len(program) % 8:
        raise CaptureError("empty or malformed BPF program")
    instructions = ctypes.create_string_buffer(program, len(program))
    fprog = struct.pack("HL", len(program) // 8, ctypes.addressof(instructions))  # struct sock_fprog
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)  # the kernel copies the program


def interface_mac(interface: str) -> str | None:
    try:
        return Path(f"/sys/class/net/{interface}/address").read_text().strip().lower()
    except OSError:
        return None


class LiveSource:
    """Frames from one interface, in batches, until `stop` is set (seen within half a second)."""

    def __init__(self, interface: str, program: bytes, linktype: int = DLT_EN10MB, rcvbuf: int = 4 << 20) -> None:
        self.interface, self.program, self.linktype, self.rcvbuf = interface, program, linktype, rcvbuf
        self.kernel_packets = 0
        self.kernel_drops = 0
        self.errors = 0
        self.sock: socket.socket | None = None

    def open(self) -> socket.socket:
        try:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        except PermissionError:
            raise CaptureError("capturing needs CAP_NET_RAW (run as root or from the systemd unit)") from None
        try:
            attach_filter(sock, self.program)  # before bind: no unfiltered frame is ever queued
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
            sock.bind((self.interface, 0))
        except OSError as exc:
            sock.close()
            raise CaptureError(f"cannot capture on {self.interface}: {exc.strerror or exc}") from None
        return sock

    def read_stats(self) -> None:
        if self.sock is not None:
            packets, drops = struct.unpack("II", self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
            self.kernel_packets += packets
            self.kernel_drops += drops

    def batches(self, stop: threading.Event, max_batch: int = 2048) -> Iterator[list[tuple[float, bytes]]]:
        backoff = 1.0
        while not stop.is_set():
            try:
                self.sock = self.open()
                backoff = 1.0
                recv = self.sock.recv
                while not stop.is_set():
                    ready, _, _ = select.select([self.sock], [], [], 0.5)
                    frames: list[tuple[float, bytes]] = []
                    if ready:
                        now = time.time()
                        while len(frames) < max_batch:
                            try:
                                frames.append((now, recv(65535, socket.MSG_DONTWAIT)))
                            except BlockingIOError:
                                break
                    yield frames
            except CaptureError:
                raise
            except OSError:
                self.errors += 1
                logger.exception("capture on %s failed; reopening in %.0f s", self.interface, backoff)
                stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)
            finally:
                if self.sock is not None:
                    self.read_stats()
                    self.sock.close()
                    self.sock = None


class ArpProber:
    """Asks every leased address 'who has it?' so that a phone asleep in a pocket still answers."""

    def __init__(self, interface: str, leases_file: str | Path, every: float) -> None:
        self.interface, self.leases_file, self.every = interface, Path(leases_file), every
        self.next_at = 0.0
        self.sent = 0
        self.mac = interface_mac(interface)
        self.ip = self._own_ip()

    def _own_ip(self) -> bytes | None:
        out = subprocess.run(["ip", "-4", "-o", "addr", "show", "dev", self.interface], capture_output=True, text=True).stdout
        for word in out.split():
            if word.count(".") == 3 and "/" in word:
                return socket.inet_aton(word.split("/")[0])
        return None

    def leased_ips(self) -> list[str]:
        """dnsmasq's lease file: expiry MAC IP hostname client-id."""
        try:
            lines = self.leases_file.read_text().splitlines()
        except OSError:
            return []
        return [fields[2] for fields in (line.split() for line in lines) if len(fields) >= 3 and fields[2].count(".") == 3]

    def due(self, now: float) -> bool:
        return self.every > 0 and now >= self.next_at and self.mac is not None and self.ip is not None

    def probe(self, now: float) -> int:
        self.next_at = now + self.every
        mac = bytes.fromhex(self.mac.replace(":", ""))
        head = b"\xff" * 6 + mac + b"\x08\x06" + b"\x00\x01\x08\x00\x06\x04\x00\x01" + mac + self.ip + b"\x00" * 6
        with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as sock:
            sock.bind((self.interface, 0))
            count = 0
            for ip in self.leased_ips():
                try:
                    sock.send((head + socket.inet_aton(ip)).ljust(60, b"\x00"))
                    count += 1
                except OSError:
                    logger.exception("ARP probe to %s failed", ip)
        self.sent += count
        return count


if __name__ == "__main__":
    # Child process: compile a filter with scapy (libpcap) and print the program as hex.
    from scapy.arch.common import compile_filter as scapy_compile

    prog = scapy_compile(sys.argv[1], linktype=int(sys.argv[2]))
    raw = ctypes.string_at(ctypes.cast(prog.bf_insns, ctypes.c_void_p), prog.bf_len * 8)
    print(raw.hex())
