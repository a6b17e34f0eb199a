"""Raw frame bytes -> Sighting. Pure functions, no I/O, no scapy: this is the hot path.

Ethernet (optionally 802.1Q-tagged): ARP, DHCP client messages (BOOTREQUEST) and mDNS.
Radiotap + 802.11: probe requests, with the antenna signal in dBm.
Frames we do not use give None; truncated or malformed ones raise Malformed (counted, dropped).
"""
from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

LINKTYPE_ETHERNET = 1
LINKTYPE_RADIOTAP = 127

DHCP_MAGIC = b"\x63\x82\x53\x63"
_U16 = struct.Struct("!H")
_RT_HEADER = struct.Struct("<BBHI")
_inet_ntoa = socket.inet_ntoa
_inet_ntop = socket.inet_ntop
_AF_INET6 = socket.AF_INET6


class Malformed(ValueError):
    """A frame too short or inconsistent for the protocol it claims."""


@dataclass(frozen=True, slots=True)
class Sighting:
    """A device seen on the guest LAN (ARP, mDNS)."""
    mac: str
    ts: float
    kind: str                        # "arp", "mdns", "dhcp" or "probe"
    ip: str | None = None


@dataclass(frozen=True, slots=True)
class DhcpSighting(Sighting):
    """A DHCP client message: what the device asks for fingerprints it."""
    hostname: str | None = None      # option 12
    prl: str | None = None           # option 55, the parameter request list: "1,3,6,15"
    vendor_class: str | None = None  # option 60
    client_id: str | None = None     # option 61, hex


@dataclass(frozen=True, slots=True)
class ProbeSighting(Sighting):
    """An 802.11 probe request heard over the air."""
    signal: int | None = None        # dBm


def parse(frame: bytes, ts: float, linktype: int = LINKTYPE_ETHERNET) -> Sighting | None:
    if linktype == LINKTYPE_ETHERNET:
        return parse_ethernet(frame, ts)
    if linktype == LINKTYPE_RADIOTAP:
        return parse_radiotap(frame, ts)
    raise Malformed(f"unsupported link type {linktype}")


_NOT_PRINTABLE = bytes(range(0, 32)) + bytes(range(127, 256))


def _text(raw: bytes, limit: int = 64) -> str | None:
    """Printable ASCII only (hostnames and vendor classes are shown on pages and exported)."""
    text = raw.translate(None, _NOT_PRINTABLE).decode("ascii").strip()[:limit]
    return text or None


def parse_ethernet(frame: bytes, ts: float) -> Sighting | None:
    fields = ethernet_fields(frame)
    if fields is None:
        return None
    if fields[1] == "dhcp":
        return DhcpSighting(fields[0], ts, *fields[1:])
    return Sighting(fields[0], ts, *fields[1:])


def ethernet_fields(frame: bytes) -> tuple | None:
    """What parse_ethernet says of a frame, as a plain tuple: (mac, kind, ip), or for DHCP
    (mac, "dhcp", ip, hostname, prl, vendor_class, client_id). The collector's fast path reads
    the parse of a frame it has not seen before without building a sighting."""
    n = len(frame)
    if n < 14:
        raise Malformed("shorter than an Ethernet header")
    if frame[6] & 0x01:
        return None  # a multicast source address is no device
    ethertype = (frame[12] << 8) | frame[13]
    off = 14
    if ethertype == 0x8100:
        if n < 18:
            raise Malformed("truncated 802.1Q tag")
        ethertype = (frame[16] << 8) | frame[17]
        off = 18
    if ethertype == 0x0806:
        return _arp(frame, off)
    if ethertype == 0x0800:
        return _ipv4(frame, off)
    if ethertype == 0x86DD:
        return _ipv6(frame, off)
    return None


def _arp(frame: bytes, off: int) -> tuple | None:
    if len(frame) < off + 28:
        raise Malformed("truncated ARP")
    if frame[off:off + 6] != b"\x00\x01\x08\x00\x06\x04":
        return None  # not Ethernet/IPv4 ARP
    sha = frame[off + 8:off + 14]
    if sha[0] & 0x01 or sha == b"\x00\x00\x00\x00\x00\x00":
        return None
    spa = frame[off + 14:off + 18]
    return sha.hex(":"), "arp", None if spa == b"\x00\x00\x00\x00" else _inet_ntoa(spa)


def _ipv4(frame: bytes, off: int) -> tuple | None:
    n = len(frame)
    if n < off + 20:
        raise Malformed("truncated IPv4 header")
    ihl = (frame[off] & 0x0F) * 4
    if frame[off] >> 4 != 4 or ihl < 20:
        raise Malformed("bad IPv4 header")
    if frame[off + 9] != 17:
        return None
    udp = off + ihl
    if n < udp + 8:
        raise Malformed("truncated UDP header")
    dport = (frame[udp + 2] << 8) | frame[udp + 3]
    if dport == 67:
        return _dhcp(frame, udp + 8)
    if dport == 5353:
        src = frame[off + 12:off + 16]
        return frame[6:12].hex(":"), "mdns", None if src == b"\x00\x00\x00\x00" else _inet_ntoa(src)
    return None


def _ipv6(frame: bytes, off: int) -> tuple | None:
    if len(frame) < off + 48:
        if len(frame) < off + 40:
            raise Malformed("truncated IPv6 header")
        return None
    if frame[off + 6] != 17:
        return None  # UDP without extension headers only
    udp = off + 40
    if ((frame[udp + 2] << 8) | frame[udp + 3]) != 5353:
        return None
    return frame[6:12].hex(":"), "mdns", _inet_ntop(_AF_INET6, frame[off + 8:off + 24])


_DECIMAL = tuple(str(i) for i in range(256))  # a byte as option 55 lists it


def _dhcp(frame: bytes, off: int) -> tuple | None:
    n = len(frame)
    if n < off + 240:
        raise Malformed("truncated BOOTP message")
    if frame[off] != 1:
        return None  # BOOTREPLY: the server speaking, not the device
    if frame[off + 1] != 1 or frame[off + 2] != 6:
        return None  # not Ethernet hardware addresses
    if frame[off + 236:off + 240] != DHCP_MAGIC:
        raise Malformed("missing DHCP magic cookie")
    chaddr = frame[off + 28:off + 34]
    if chaddr[0] & 0x01:
        return None
    ciaddr = frame[off + 12:off + 16]
    ip = None if ciaddr == b"\x00\x00\x00\x00" else _inet_ntoa(ciaddr)
    hostname = prl = vendor = client_id = None
    i = off + 240
    while i < n:
        code = frame[i]
        if code == 255:
            break
        if code == 0:
            i += 1
            continue
        if i + 1 >= n:
            raise Malformed("truncated DHCP option")
        length = frame[i + 1]
        start, i = i + 2, i + 2 + length
        if i > n:
            raise Malformed("DHCP option runs past the frame")
        if code == 12:
            hostname = _text(frame[start:i])
        elif code == 55:
            prl = ",".join([_DECIMAL[b] for b in frame[start:i]])
        elif code == 60:
            vendor = _text(frame[start:i])
        elif code == 61:
            client_id = frame[start:i].hex()
        elif code == 50 and length == 4 and ip is None:
            ip = _inet_ntoa(frame[start:i])
    return chaddr.hex(":"), "dhcp", ip, hostname, prl, vendor, client_id


# Radiotap fields before the antenna signal (bit 5): (alignment, size) per present bit.
_RT_FIELDS = ((8, 8), (1, 1), (1, 1), (2, 4), (1, 2), (1, 1))


def parse_radiotap(frame: bytes, ts: float) -> Sighting | None:
    n = len(frame)
    if n < 8:
        raise Malformed("shorter than a radiotap header")
    version, _, rt_len, present = _RT_HEADER.unpack_from(frame)
    if version != 0 or rt_len < 8 or rt_len > n:
        raise Malformed("bad radiotap header")
    off = 8
    word = present
    while word & 0x80000000:  # extended presence bitmaps
        if off + 4 > rt_len:
            raise Malformed("truncated radiotap presence words")
        word = int.from_bytes(frame[off:off + 4], "little")
        off += 4
    signal = None
    if present & 0x20:
        for bit, (align, size) in enumerate(_RT_FIELDS):
            if present & (1 << bit):
                off = (off + align - 1) & ~(align - 1)
                if bit == 5:
                    if off >= rt_len:
                        raise Malformed("truncated radiotap signal field")
                    signal = frame[off] - 256 if frame[off] > 127 else frame[off]
                off += size
    dot11 = rt_len
    if n < dot11 + 16:
        raise Malformed("truncated 802.11 header")
    if frame[dot11] != 0x40:
        return None  # not a probe request (type 0, subtype 4)
    addr2 = frame[dot11 + 10:dot11 + 16]
    if addr2[0] & 0x01:
        return None
    return ProbeSighting(addr2.hex(":"), ts, "probe", None, signal)
