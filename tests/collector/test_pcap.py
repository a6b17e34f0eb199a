import pytest
from scapy.layers.l2 import ARP, Ether
from scapy.utils import wrpcap

from collector.pcap import PcapError, PcapReader


def packets(n=5):
    out = []
    for i in range(n):
        p = Ether(src="3c:22:fb:01:02:03") / ARP(psrc="10.0.0.1")
        p.time = 1700000000.25 + i
        out.append(p)
    return out


@pytest.mark.parametrize("nano", [False, True])
def test_reads_what_scapy_writes(tmp_path, nano):
    path = tmp_path / "a.pcap"
    wrpcap(str(path), packets(), nano=nano)
    with PcapReader(path) as reader:
        records = list(reader)
        assert reader.linktype == 1
    assert [round(ts, 2) for ts, _ in records] == [1700000000.25 + i for i in range(5)]
    assert records[0][1] == bytes(packets(1)[0])


def test_truncated_capture_keeps_whole_records(tmp_path):
    path = tmp_path / "a.pcap"
    wrpcap(str(path), packets())
    data = path.read_bytes()
    path.write_bytes(data[:-10])
    with PcapReader(path) as reader:
        assert len(list(reader)) == 4 and reader.truncated == 1


@pytest.mark.parametrize("content,message", [(b"", "empty"), (b"hello world, not a capture at all", "not a pcap"),
                                             (b"\x0a\x0d\x0d\x0a" + b"\x00" * 40, "pcapng")])
def test_bad_files_are_refused_clearly(tmp_path, content, message):
    path = tmp_path / "x.pcap"
    path.write_bytes(content)
    with pytest.raises(PcapError, match=message):
        PcapReader(path)


def test_missing_file(tmp_path):
    with pytest.raises(PcapError, match="cannot open"):
        PcapReader(tmp_path / "nope.pcap")
