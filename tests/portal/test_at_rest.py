"""A submitted email or phone never lies in the SQLite files in plain text."""
from pathlib import Path

from portal.config import database_path
from portal.db import database


def test_raw_database_bytes_hold_no_contact_details(app, client, settings):
    email, phone, name = "plaintext.visitor@example.com", "0912 345 678", "Trần Văn Bảo"
    response = client.sign_in(email=email, phone=phone, name=name, marketing=["marketing_email", "marketing_sms"])
    assert response.status_code == 303
    client.get("/my-data")
    database.close()  # checkpoint nothing away: read the main file and the WAL as they are
    path = database_path(settings)
    raw = b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal")) if p.exists())
    assert len(raw) > 4096
    for needle in (email, "plaintext.visitor", "912345678", "+84912345678", "0912 345 678", name):
        assert needle.encode() not in raw, needle
        assert needle.encode("utf-16-le") not in raw, needle
