"""Figures from day one (issue 16): a new store's dashboard says what will appear and when, and a
store whose guests only sign in (no collector) shows them."""
import datetime
import re

import pytest

from portal import metrics, signin_visits
from portal.i18n import translate
from portal.models import utcnow


def kpi_today(html: str) -> int:
    return int(re.search(r'id="kpi-today">(\d+)<', html).group(1))


@pytest.mark.parametrize("language", ["en", "vi"])
def test_a_new_store_is_told_what_will_appear_and_when(as_role, settings, language):
    html = as_role("owner").get("/panel/", headers={"Accept-Language": language}).get_data(as_text=True)
    assert 'id="dashboard-empty"' in html
    expected = translate("dashboard_empty_signins", language).format(gap=settings.visit_gap_minutes)
    assert expected.replace("“", "&#8220;") in html or expected in html
    assert translate("dashboard_empty_people", language) in html
    assert kpi_today(html) == 0


def test_a_store_with_only_sign_ins_shows_them(app, as_role, make_client, settings):
    signin_visits.run(settings.visit_gap_minutes)      # the job's first run, before anyone came
    guests = [make_client(ip=f"10.0.0.{20 + n}") for n in range(3)]
    for n, guest in enumerate(guests):
        assert guest.sign_in(email=f"guest{n}@example.com").status_code == 303
    owner = as_role("owner")
    signin_visits.run(settings.visit_gap_minutes)      # signed in now: here, before any visit ends
    # An online phone's captive probe is a sign of life (the null gateway: the portal sees them).
    probe = guests[0].get("/generate_204", headers={"Host": "connectivitycheck.gstatic.com"})
    assert probe.status_code == 204
    assert app.extensions["footfall"].last_seen.flush() == 1
    app.extensions["footfall"].dashboard.invalidate()
    html = owner.get("/panel/").get_data(as_text=True)
    assert kpi_today(html) == 3
    assert 'id="dashboard-empty"' not in html
    later = utcnow() + datetime.timedelta(minutes=settings.visit_gap_minutes + 5)
    assert signin_visits.run(settings.visit_gap_minutes, now=later).visits == 3   # the visits end
    figures = metrics.dashboard(later)
    assert (figures.visits_30, sum(n for _, n in figures.per_day), sum(n for _, n in figures.dwell)) == (3, 3, 3)
