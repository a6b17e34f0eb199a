import os
import stat

import pytest
from cryptography.exceptions import InvalidTag

from portal.identity import (InvalidContact, Keys, Vault, load_or_create_keys, mask_email, mask_phone,
                             normalize_email, normalize_phone)


@pytest.mark.parametrize("raw", ["0912 345 678", "+84 912 345 678", "84912345678", "0912-345-678", " (+84) 912.345.678 "])
def test_vietnamese_phone_forms_are_one_person(raw):
    assert normalize_phone(raw, "VN") == "+84912345678"


def test_foreign_phone_keeps_its_country():
    assert normalize_phone("+33 6 12 34 56 78", "VN") == "+33612345678"
    assert normalize_phone("06 12 34 56 78", "FR") == "+33612345678"


@pytest.mark.parametrize("raw,code", [("", "phone_missing"), ("12", "phone_invalid"), ("hello", "phone_invalid"),
                                      ("0912345678999", "phone_invalid"), ("+84" + "9" * 40, "phone_invalid")])
def test_bad_phones(raw, code):
    with pytest.raises(InvalidContact) as exc:
        normalize_phone(raw, "VN")
    assert exc.value.code == code


@pytest.mark.parametrize("raw", ["Foo.Bar@Example.COM", "  foo.bar@example.com ", "FOO.BAR@EXAMPLE.COM"])
def test_email_normalized_lowercase(raw):
    assert normalize_email(raw) == "foo.bar@example.com"


def test_internationalized_email_is_accepted():
    assert normalize_email("người.dùng@ví-dụ.vn").endswith("@ví-dụ.vn")


@pytest.mark.parametrize("raw", ["plainaddress", "a@b", "<script>@x.com", "a b@example.com", "a@@example.com",
                                 "x" * 250 + "@example.com"])
def test_bad_emails(raw):
    with pytest.raises(InvalidContact) as exc:
        normalize_email(raw)
    assert exc.value.code == "email_invalid"


def test_masks_hide_most_of_the_value():
    assert mask_email("visitor@example.com") == "v***@example.com"
    assert mask_phone("+84912345678") == "+849*****678"


def test_encryption_round_trip_and_binding_to_context():
    vault = Vault(Keys.generate())
    blob = vault.encrypt("visitor@example.com", "lead.email")
    assert b"visitor" not in blob
    assert vault.decrypt(blob, "lead.email") == "visitor@example.com"
    assert vault.encrypt("visitor@example.com", "lead.email") != blob  # fresh nonce each time
    with pytest.raises(InvalidTag):
        vault.decrypt(blob, "lead.phone")  # a ciphertext moved to another column does not open
    tampered = blob[:-1] + bytes([blob[-1] ^ 1])
    with pytest.raises(InvalidTag):
        vault.decrypt(tampered, "lead.email")


def test_blind_index_is_keyed_and_deterministic():
    a, b = Vault(Keys.generate()), Vault(Keys.generate())
    assert a.blind_index("email", "x@example.com") == a.blind_index("email", "x@example.com")
    assert a.blind_index("email", "x@example.com") != b.blind_index("email", "x@example.com")
    assert a.blind_index("email", "x") != a.blind_index("phone", "x")


def test_key_file_created_0600_and_reused(tmp_path):
    path = tmp_path / "sub" / "keys.json"
    keys = load_or_create_keys(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_or_create_keys(path) == keys


def test_key_file_readable_by_others_is_refused(tmp_path):
    path = tmp_path / "keys.json"
    load_or_create_keys(path)
    os.chmod(path, 0o644)
    with pytest.raises(PermissionError, match="chmod 600"):
        load_or_create_keys(path)
