from pathlib import Path

from collector.oui import DEFAULT_FILE, OuiTable
from portal.core.macs import randomized
from tests.conftest import require

SAMPLE = """Registry,Assignment,Organization Name,Organization Address
MA-L,3C22FB,"Apple, Inc.",1 Infinite Loop Cupertino CA US 95014
MA-L,001A11,"Google, Inc.",1600 Amphitheater Parkway Mountain View CA US 94043
MA-L,ZZZZZZ,Broken row,nowhere
MA-M,001BC50,Not a MA-L block,somewhere
"""


def test_lookup_from_a_registry_file(tmp_path):
    path = tmp_path / "oui.csv"
    path.write_text(SAMPLE)
    table = OuiTable(path)
    assert len(table) == 2
    assert table.vendor("3c:22:fb:01:02:03") == "Apple, Inc."
    assert table.vendor("00:1a:11:ff:ff:ff") == "Google, Inc."
    assert table.vendor("00:00:01:00:00:00") is None
    assert table.vendor("3e:22:fb:01:02:03") is None  # locally administered: no vendor
    assert table.vendor("not-a-mac") is None


def test_missing_registry_means_no_vendor_not_a_crash(tmp_path):
    assert OuiTable(tmp_path / "absent.csv").vendor("3c:22:fb:01:02:03") is None


def test_the_maintained_registry():
    require(DEFAULT_FILE.exists(), "Debian package ieee-data is not installed")
    table = OuiTable()
    assert len(table) > 20000
    assert table.vendor("00:1a:11:00:00:01") == "Google, Inc."


def test_randomized_bit():
    assert randomized("da:a1:19:00:00:01") and randomized("02:00:00:00:00:00")
    assert not randomized("3c:22:fb:01:02:03")


def test_prefixes_are_read_at_the_first_lookup(tmp_path):
    """A collector that only sees anonymous devices never needs vendors: the file is read when
    the first vendor is asked for, not when the table is made."""
    path = tmp_path / "oui.csv"
    table = OuiTable(path)
    path.write_text(SAMPLE)
    assert table.vendor("3e:22:fb:01:02:03") is None  # randomized: no read
    assert table.vendor("3c:22:fb:01:02:03") == "Apple, Inc." and len(table) == 2
