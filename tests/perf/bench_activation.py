"""Activation figures, printed as JSON (issue 17): evaluating every automation (first visit, Nth
visit, lapsed, review, a campaign to everyone; email and SMS) over 100,000 leads and 1,000,000
visits, beside the segment recompute over the same data in the same run (the baseline; goal: at
most its time), and emails handed to a local SMTP server (aiosmtpd) per second through the
activation job (checks at send time, voucher, rendering, the send log), beside the bare SMTP
driver sending the very same messages again (the baseline).

    .venv/bin/python tests/perf/bench_activation.py [--leads 100000 --devices 200000 --visits 1000000 --emails 500]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

PROFILE = "--profile" in sys.argv
if PROFILE:
    sys.argv.remove("--profile")
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument("--devices", type=int, default=200_000)
    parser.add_argument("--visits", type=int, default=1_000_000)
    parser.add_argument("--emails", type=int, default=500)
    args = parser.parse_args()

    from aiosmtpd.controller import Controller
    from werkzeug.datastructures import MultiDict

    from portal import create_app, segments
    from portal.activation import plan, send, texts
    from portal.activation.models import ActivationSend, Automation
    from portal.config import load_settings
    from portal.db import checkpoint, database
    from portal.messages.smtp import SmtpDriver
    from portal.models import utcnow
    from tests.messages.providers import free_port
    from tests.perf.seed import seed

    class Count:
        def __init__(self):
            self.n = 0

        async def handle_DATA(self, server, session, envelope):
            self.n += 1
            return "250 OK"

    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(environ={}, data_dir=tmp, log_level="WARNING", activation_quiet_start=0,
                                 activation_quiet_end=0, activation_rate_per_second=100_000, activation_max_per_week=100,
                                 marketing_max_per_month=100)
        app = create_app(settings)
        vault = app.extensions["footfall"].vault
        with database.connection_context():
            start = time.perf_counter()
            out["seeded"] = seed(vault, args.leads, args.devices, args.visits, days=365)
            # Proved contacts (double opt-in), as a store whose visitors enter their codes.
            database.execute_sql("UPDATE lead SET email_verified_at = created_at, "
                                 "phone_verified_at = CASE WHEN phone_enc IS NOT NULL THEN created_at END")
            database.execute_sql("ANALYZE")
            checkpoint()  # the seed's WAL folded now: neither measurement pays for the seed's writes
            out["seed_s"] = round(time.perf_counter() - start, 1)
            tz = texts.store_tz(settings)
            common = {"channels": ["email", "sms"], "voucher_days": "30", "review_link": "https://g.page/r/x/review",
                      "email_subject_vi": "Chào {name}", "email_text_vi": "{store}: mã {voucher}",
                      "email_subject_en": "Hi {name}", "email_text_en": "{store}: code {voucher}",
                      "sms_text_vi": "{store}: mã {voucher}", "sms_text_en": "{store}: code {voucher}"}
            for kind, extra in (("first_visit", {"delay_hours": "2"}), ("nth_visit", {"nth": "5"}),
                                ("lapsed", {"lapsed_days": "30"}), ("review", {}), ("campaign", {"segment": ""})):
                form = MultiDict({"kind": kind, "name": kind, **{k: v for k, v in common.items() if k != "channels"}, **extra})
                form.setlist("channels", common["channels"])
                auto = texts.save(texts.clean(form, tz), "bench")
                auto.enabled = True
                auto.save()
            now = utcnow()
            timings = {}
            for label in ("first", "steady"):
                start = time.perf_counter()
                segments.recompute(now)
                timings[f"segments_{label}_s"] = round(time.perf_counter() - start, 2)
                start = time.perf_counter()
                added = plan.plan(now, tz, settings.activation_holdout_percent)
                timings[f"plan_{label}_s"] = round(time.perf_counter() - start, 2)
                if label == "first":
                    kinds = {a.uid: a.kind for a in Automation.select()}
                    out["planned"] = {kinds[uid]: n for uid, n in added.items()}
            out.update(timings)
            # Emails through the job: keep N due email rows, the rest out of the way.
            keep = [r[0] for r in database.execute_sql(
                "SELECT id FROM activation_send WHERE state = 'due' AND channel = 'email' ORDER BY id LIMIT ?", (args.emails,))]
            with database.atomic():
                database.execute_sql("UPDATE activation_send SET state = 'skipped', reason = 'bench' WHERE state = 'due'")
                ActivationSend.update(state="due").where(ActivationSend.id.in_(keep)).execute()
            counter = Count()
            controller = Controller(counter, hostname="127.0.0.1", port=free_port())
            controller.start()
            try:
                driver = SmtpDriver("127.0.0.1", controller.port, "wifi@store.example", security="none")

                class Keeping:  # the job's driver, keeping each message for the baseline
                    name = "smtp"
                    kept = []

                    spent = 0.0

                    def send(self, message):
                        self.kept.append(message)
                        began = time.perf_counter()
                        try:
                            return driver.send(message)
                        finally:
                            Keeping.spent += time.perf_counter() - began

                # Warm the server and the client's code paths first (the first connections are slower).
                from portal.messages import Message
                for i in range(50):
                    driver.send(Message("email", f"warm{i}@example.com", "warm", subject="warm"))
                keeping = Keeping()
                ctx = send.context(dataclasses.replace(settings), vault, {"email": keeping})
                if PROFILE:
                    import cProfile
                    import pstats
                    prof = cProfile.Profile()
                    prof.enable()
                start = time.perf_counter()
                result = send.deliver(ctx, now)
                job = time.perf_counter() - start
                if PROFILE:
                    prof.disable()
                    pstats.Stats(prof, stream=sys.stderr).sort_stats("cumulative").print_stats(25)
                # The baseline: the very same messages (headers, both parts) through the bare driver.
                start = time.perf_counter()
                for message in keeping.kept:
                    driver.send(message)
                bare = time.perf_counter() - start
            finally:
                controller.stop()
            out["emails"] = {"handed": result["sent"], "received": counter.n - 50}
            out["smtp_bare_per_s"] = round(len(keeping.kept) / bare, 1)
            out["smtp_job_per_s"] = round(result["sent"] / job, 1)
            out["smtp_job_share_in_driver"] = round(Keeping.spent / job, 2)
    out["goals"] = {
        "plan_at_most_segment_recompute": out["plan_first_s"] <= out["segments_first_s"]
        and out["plan_steady_s"] <= out["segments_steady_s"],
        "job_emails_at_least_half_the_bare_driver_rate": out["smtp_job_per_s"] >= out["smtp_bare_per_s"] / 2,
        "every_email_received": out["emails"]["received"] == 2 * out["emails"]["handed"],
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
