"""The `voucher.redeemed` event (portal/core/events.py): what the central store and webhooks read."""
from __future__ import annotations

import pytest

from portal.core.events import EventError, validate


def event(**data):
    return {"uid": "e1", "topic": "voucher.redeemed", "at": "2026-03-10T05:00:00", "data": data}


def test_a_redeemed_voucher_event_is_valid_with_or_without_amount_and_person():
    full = event(voucher="K7QPM4XR", code="K7QP-M4XR", value=125000, currency="VND", lead="L1", campaign="A1")
    assert validate(full).data["value"] == 125000
    assert validate(event(voucher="K7QPM4XR", value=None)).topic == "voucher.redeemed"


@pytest.mark.parametrize("data, field", [({}, "voucher"), ({"voucher": "K7QP M4XR"}, "voucher"),
                                         ({"voucher": "K7QPM4XR", "value": -1}, "value"),
                                         ({"voucher": "K7QPM4XR", "value": True}, "value"),
                                         ({"voucher": "K7QPM4XR", "value": 1.5}, "value"),
                                         ({"voucher": "K7QPM4XR", "currency": "vnd"}, "currency"),
                                         ({"voucher": "K7QPM4XR", "code": "<b>"}, "code"),
                                         ({"voucher": "K7QPM4XR", "lead": "x\n"}, "lead")])
def test_a_bad_redeemed_voucher_event_names_its_field(data, field):
    with pytest.raises(EventError) as bad:
        validate(event(**data))
    assert bad.value.args[0] == field
