"""The parser on packets built by hand with scapy, on fuzzed packets and on random bytes."""
import pytest
from hypothesis import given, settings as hsettings, strategies as st
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.dot11 import Dot11, Dot11ProbeReq, RadioTap
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.packet import fuzz

from collector.parse import LINKTYPE_RADIOTAP, DhcpSighting, Malformed, ProbeSighting, Sighting, parse

MAC = "3c:22:fb:01:02:03"
RANDOM_MAC = "da:a1:19:aa:bb:cc"


def dhcp_request(mac=MAC, options=None, **bootp):
    opts = options or [("message-type", "request"), ("requested_addr", "10.77.0.42"), ("hostname", b"Lans-iPhone"),
                       ("param_req_list", [1, 121, 3, 6, 15, 119, 252]), ("vendor_class_id", b"android-dhcp-13"),
                       ("client_id", b"\x01" + bytes.fromhex(mac.replace(":", ""))), "end"]
    return bytes(Ether(src=mac, dst="ff:ff:ff:ff:ff:ff") / IP(src="0.0.0.0", dst="255.255.255.255")
                 / UDP(sport=68, dport=67) / BOOTP(chaddr=bytes.fromhex(mac.replace(":", "")), **bootp) / DHCP(options=opts))


def test_dhcp_request_with_fingerprint():
    s = parse(dhcp_request(), 1000.5)
    assert s == DhcpSighting(MAC, 1000.5, "dhcp", "10.77.0.42", "Lans-iPhone", "1,121,3,6,15,119,252", "android-dhcp-13",
                         "01" + MAC.replace(":", ""))


def test_dhcp_renewal_uses_ciaddr():
    s = parse(dhcp_request(options=[("message-type", "request"), "end"], ciaddr="10.77.0.9"), 1.0)
    assert (s.ip, s.hostname, s.prl) == ("10.77.0.9", None, None)


def test_dhcp_server_reply_is_not_a_device_sighting():
    reply = bytes(Ether(src="02:00:00:00:00:01") / IP() / UDP(sport=67, dport=68) / BOOTP(op=2) / DHCP(options=["end"]))
    assert parse(reply, 1.0) is None


def test_hostname_is_cleaned_of_control_characters_and_markup_is_kept_as_text():
    s = parse(dhcp_request(options=[("hostname", b"evil\x00\n<script>"), "end"]), 1.0)
    assert s.hostname == "evil<script>"  # printable ASCII only; templates escape the rest


def test_arp_request_and_probe():
    arp = bytes(Ether(src=MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(hwsrc=MAC, psrc="10.77.0.42", pdst="10.77.0.1"))
    assert parse(arp, 2.0) == Sighting(MAC, 2.0, "arp", "10.77.0.42")
    probe = bytes(Ether(src=MAC) / ARP(hwsrc=MAC, psrc="0.0.0.0", pdst="10.77.0.42"))
    assert parse(probe, 2.0).ip is None


def test_vlan_tagged_arp():
    frame = bytes(Ether(src=MAC) / Dot1Q(vlan=20) / ARP(hwsrc=MAC, psrc="10.77.0.5"))
    assert parse(frame, 3.0).ip == "10.77.0.5"


def test_mdns_v4_and_v6():
    v4 = bytes(Ether(src=RANDOM_MAC, dst="01:00:5e:00:00:fb") / IP(src="10.77.0.7", dst="224.0.0.251") / UDP(sport=5353, dport=5353))
    assert parse(v4, 4.0) == Sighting(RANDOM_MAC, 4.0, "mdns", "10.77.0.7")
    v6 = bytes(Ether(src=RANDOM_MAC) / IPv6(src="fe80::1", dst="ff02::fb") / UDP(sport=5353, dport=5353))
    assert parse(v6, 4.0).ip == "fe80::1"


@pytest.mark.parametrize("frame", [
    bytes(Ether(src=MAC) / IP(src="10.77.0.7", dst="1.1.1.1") / UDP(dport=53)),
    bytes(Ether(src="01:00:5e:00:00:01") / ARP(hwsrc=MAC)),
    bytes(Ether(src=MAC, type=0x88cc) / b"lldp"),
    bytes(Ether(src=MAC) / IPv6() / UDP(dport=53)),
])
def test_frames_we_do_not_use(frame):
    assert parse(frame, 1.0) is None


def test_probe_request_with_signal():
    frame = bytes(RadioTap(present="Flags+Rate+Channel+dBm_AntSignal", dBm_AntSignal=-61, Rate=2, ChannelFrequency=2437)
                  / Dot11(type=0, subtype=4, addr1="ff:ff:ff:ff:ff:ff", addr2=RANDOM_MAC, addr3="ff:ff:ff:ff:ff:ff")
                  / Dot11ProbeReq())
    assert parse(frame, 5.0, LINKTYPE_RADIOTAP) == ProbeSighting(RANDOM_MAC, 5.0, "probe", signal=-61)


def test_probe_request_with_tsft_alignment():
    frame = bytes(RadioTap(present="TSFT+Flags+dBm_AntSignal", mac_timestamp=123456789, dBm_AntSignal=-80)
                  / Dot11(type=0, subtype=4, addr2=MAC) / Dot11ProbeReq())
    assert parse(frame, 5.0, LINKTYPE_RADIOTAP).signal == -80


@pytest.mark.parametrize("cut", [1, 13, 17, 20, 30, 41, 100, 270])
def test_truncated_frames_raise_malformed_never_crash(cut):
    frame = dhcp_request()[:cut]
    try:
        result = parse(frame, 1.0)
    except Malformed:
        return
    assert result is None or isinstance(result, Sighting)


def test_dhcp_option_running_past_the_frame_is_malformed():
    frame = bytearray(dhcp_request(options=[("hostname", b"abc"), "end"]))
    at = frame.index(b"\x0c\x03abc")
    frame[at + 1] = 200  # option length beyond the end
    with pytest.raises(Malformed):
        parse(bytes(frame[:at + 5]), 1.0)


@pytest.mark.parametrize("layer", ["dhcp", "arp", "radiotap"])
def test_scapy_fuzzed_packets_never_crash(layer):
    for i in range(300):
        if layer == "dhcp":
            packet = Ether(src=MAC) / IP() / UDP(dport=67) / fuzz(BOOTP()) / fuzz(DHCP())
            linktype = 1
        elif layer == "arp":
            packet = Ether(src=MAC) / fuzz(ARP())
            linktype = 1
        else:
            packet = fuzz(RadioTap()) / Dot11(type=0, subtype=4, addr2=MAC)
            linktype = LINKTYPE_RADIOTAP
        try:
            frame = bytes(packet)
        except Exception:  # scapy cannot always build what it fuzzes
            continue
        try:
            result = parse(frame, float(i), linktype)
        except Malformed:
            continue
        assert result is None or isinstance(result, Sighting)


@hsettings(max_examples=400, deadline=None)
@given(st.binary(max_size=400), st.sampled_from([1, LINKTYPE_RADIOTAP]))
def test_random_bytes_never_crash(data, linktype):
    try:
        result = parse(data, 0.0, linktype)
    except Malformed:
        return
    assert result is None or isinstance(result, Sighting)
