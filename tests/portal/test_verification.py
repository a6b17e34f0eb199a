"""One-time codes (issue 11): hash only, ten minutes, five tries, single use, limits, races."""
from __future__ import annotations

import datetime
import threading

import pytest

from portal.models import VerificationCode, utcnow
from portal.verification import COOLDOWN, MAX_TRIES, Codes, VerificationError


@pytest.fixture
def codes(app):
    return Codes(b"k" * 32)


def test_a_code_is_stored_only_as_its_hash_and_works_once(codes):
    issued = codes.issue("email", "ix-lan", "02:00:00:00:00:01", "10.0.0.1")
    row = VerificationCode.get(VerificationCode.uid == issued.uid)
    assert issued.code not in (row.code_hash, row.uid) and len(issued.code) == 6 and issued.code.isdigit()
    assert codes.check(issued.uid, issued.code, "02:00:00:00:00:01").used_at is not None
    with pytest.raises(VerificationError) as again:
        codes.check(issued.uid, issued.code)
    assert again.value.code == "used"


@pytest.mark.parametrize("typed,reason", [("12345", "malformed"), ("１２３４５６", "malformed"), ("²²²²²²", "malformed"),
                                          ("abcdef", "malformed"), ("", "malformed")])
def test_malformed_codes_change_nothing(codes, typed, reason):
    issued = codes.issue("email", "ix-m", None, None)
    with pytest.raises(VerificationError) as refused:
        codes.check(issued.uid, typed)
    assert refused.value.code == reason
    assert VerificationCode.get(VerificationCode.uid == issued.uid).tries == 0


def test_five_tries_then_even_the_right_code_is_refused(codes):
    issued = codes.issue("sms", "ix-t", None, None)
    wrong = f"{(int(issued.code) + 1) % 10**6:06d}"
    for _ in range(MAX_TRIES):
        with pytest.raises(VerificationError, match="wrong"):
            codes.check(issued.uid, wrong)
    with pytest.raises(VerificationError) as locked:
        codes.check(issued.uid, issued.code)
    assert locked.value.code == "too_many_tries"


def test_parallel_guesses_count_as_guesses_in_a_row_and_one_code_wins_once(codes):
    issued = codes.issue("sms", "ix-p", None, None)
    wrong = f"{(int(issued.code) + 1) % 10**6:06d}"
    outcomes = []
    threads = [threading.Thread(target=lambda: outcomes.append(_try(codes, issued.uid, wrong))) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["too_many_tries"] * (12 - MAX_TRIES) + ["wrong"] * MAX_TRIES
    fresh = codes.issue("sms", "ix-q", None, None)
    winners = []
    threads = [threading.Thread(target=lambda: winners.append(_try(codes, fresh.uid, fresh.code))) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Exactly one wins; the others find it used (or, the sixth try, the code out of tries).
    assert winners.count("ok") == 1 and set(winners) <= {"ok", "used", "too_many_tries"}


def _try(codes, uid, code):
    try:
        codes.check(uid, code)
        return "ok"
    except VerificationError as exc:
        return exc.code


def test_expired_codes_and_another_devices_code(codes):
    then = utcnow() - datetime.timedelta(minutes=11)
    old = codes.issue("email", "ix-e", "02:00:00:00:00:02", None, now=then)
    with pytest.raises(VerificationError, match="expired"):
        codes.check(old.uid, old.code)
    mine = codes.issue("email", "ix-f", "02:00:00:00:00:02", None)
    with pytest.raises(VerificationError, match="other_device"):
        codes.check(mine.uid, mine.code, "02:00:00:00:00:03")
    with pytest.raises(VerificationError, match="not_found"):
        codes.check("nope", "123456")


def test_cooldown_and_hourly_and_daily_limits_per_destination_device_and_ip(codes):
    now = utcnow()
    codes.issue("sms", "ix-c", None, None, now=now)
    with pytest.raises(VerificationError, match="cooldown"):
        codes.issue("sms", "ix-c", None, None, now=now + COOLDOWN / 2)
    for i in range(1, 5):  # four more, each after the cooldown: five in the hour
        codes.issue("sms", "ix-c", None, None, now=now + i * COOLDOWN * 2)
    with pytest.raises(VerificationError, match="limit_hour"):
        codes.issue("sms", "ix-c", None, None, now=now + 10 * COOLDOWN)
    # One device asking for many destinations (SMS pumping): five an hour.
    for i in range(5):
        codes.issue("sms", f"ix-pump{i}", "02:00:00:00:00:09", "10.9.9.9", now=now)
    with pytest.raises(VerificationError, match="limit_hour"):
        codes.issue("sms", "ix-pump5", "02:00:00:00:00:09", "10.9.9.10", now=now)
    # One address rotating forged devices: ten an hour.
    for i in range(5):
        codes.issue("sms", f"ix-ip{i}", f"02:00:00:00:01:{i:02x}", "10.9.9.9", now=now)
    with pytest.raises(VerificationError, match="limit_hour"):
        codes.issue("sms", "ix-ip9", "02:00:00:00:01:99", "10.9.9.9", now=now)
    # A day later the destination may receive again; within the day, ten at most.
    later = now + datetime.timedelta(hours=2)
    for i in range(5):
        codes.issue("sms", "ix-c", None, None, now=later + i * COOLDOWN * 2)
    with pytest.raises(VerificationError, match="limit_day"):
        codes.issue("sms", "ix-c", None, None, now=later + datetime.timedelta(hours=2))
