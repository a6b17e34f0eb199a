"""Two managers at once (issue 9): saving settings, exporting, erasing, while visitors sign in."""
from __future__ import annotations

import threading

from portal.models import AuditEntry, Lead, Segment
from portal.visitors import Client, SignInForm
from tests.panel.test_desk import people  # noqa: F401  (the fixture)

ROUNDS = 12


def test_two_managers_and_visitors_at_once(as_role, people, app):  # noqa: F811
    owner, manager = as_role("owner"), as_role("manager")
    owner.form("/panel/segments/recompute", {})
    segment = Segment.get(Segment.key == "new")
    targets = [Lead.get(Lead.email_index == people.vault.blind_index("email", f"p{i}@example.com")).uid
               for i in range(2 * ROUNDS)]
    statuses: dict[str, list[int]] = {"settings": [], "export": [], "erase": [], "recompute": []}
    signed: list[bool] = []
    errors: list[BaseException] = []

    def guarded(fn):
        def run():
            try:
                fn()
            except BaseException as exc:  # reported by the assertion below, with its type
                errors.append(exc)
        return run

    def owner_work():
        for i in range(ROUNDS):
            statuses["settings"].append(owner.form("/panel/settings", {"store_name": f"Cà Phê {i}", "brand_color": "#aa3300",
                                                                     "session_minutes": "90", "confirm": "1"},
                                                   token_page="/panel/settings").status_code)
            statuses["erase"].append(owner.form(f"/panel/leads/{targets[i]}/erase", {"confirm": "yes"}).status_code)
            statuses["recompute"].append(owner.form("/panel/segments/recompute", {}).status_code)

    def manager_work():
        for i in range(ROUNDS):
            statuses["export"].append(manager.get(f"/panel/segments/{segment.key}/export/csv").status_code)
            statuses["erase"].append(manager.form(f"/panel/leads/{targets[ROUNDS + i]}/erase", {"confirm": "yes"}).status_code)

    def visitor_work(n):
        for i in range(ROUNDS):
            k = n * ROUNDS + i
            signed.append(people.sign_in(SignInForm(email=f"c{k}@example.com", terms=True),
                                         Client(f"10.6.{n}.{i + 1}", f"02:00:00:06:{n:02x}:{i:02x}")).ok)

    threads = [threading.Thread(target=guarded(owner_work)), threading.Thread(target=guarded(manager_work)),
               *(threading.Thread(target=guarded(lambda n=n: visitor_work(n))) for n in range(3))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert statuses == {"settings": [200] * ROUNDS, "export": [200] * ROUNDS, "erase": [302] * (2 * ROUNDS),
                        "recompute": [302] * ROUNDS}
    assert signed == [True] * (3 * ROUNDS)
    assert Lead.select().where(Lead.uid.in_(targets) & Lead.erased_at.is_null(False)).count() == 2 * ROUNDS
    assert Lead.select().where(Lead.erased_at.is_null()).count() == 60 - 2 * ROUNDS + 3 * ROUNDS
    assert app.extensions["footfall"].settings.store_name == f"Cà Phê {ROUNDS - 1}"
    actions = [e.action for e in AuditEntry.select()]
    assert actions.count("settings_changed") == ROUNDS and actions.count("export") == ROUNDS
