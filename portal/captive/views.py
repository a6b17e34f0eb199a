"""Visitor pages on the portal's own host. Thin: parse, call one domain function, render."""
from __future__ import annotations

import json
import secrets
from urllib.parse import quote

from flask import Response, abort, current_app, g, redirect, render_template, request, send_file, session, url_for

from portal import consent, store_settings
from portal.captive import bp
from portal.captive.look import next_step, notice_link, splash_look, store_zone, until_words
from portal.safeurl import safe_continue
from portal.app import csrf
from portal.gateway.opennds import FasRequest, FasThrottled, InvalidFas, auth_token, auth_url
from portal.gateway.opennds_authmon import AuthGetRefused
from portal import i18n
from portal.i18n import LANGUAGES, negotiate, translate
from portal.panel.fence import forwarded_untrusted
from portal.models import utcnow
from portal.policy_texts import MARKETING_PURPOSES, NOTICE, PURPOSES, REQUIRED_PURPOSE
from portal.core import deadlines
from portal.core.purposes import ANALYTICS_PURPOSES, OPTIONAL_PURPOSES
from portal.visitors import Client, SignInForm

_LANG_COOKIE = "ff_lang"
PREVIEW_FOLD = 1266  # one and a half screens of a 390x844 phone: where the owner's preview draws a line


def runtime():
    return current_app.extensions["footfall"]


def current_fas() -> FasRequest | None:
    """The openNDS client this browser session speaks for (opennds driver only)."""
    if runtime().gateway.name != "opennds":
        return None
    return FasRequest.from_session(session.get("fas"))


def client() -> Client:
    fas = current_fas()
    if fas is not None:
        return Client(ip=fas.clientip, mac=fas.clientmac)
    ip = request.remote_addr or ""
    return Client(ip=ip, mac=runtime().gateway.client_mac(ip) if ip else None)


def finish(nxt: str | None):
    """After consent: a real navigation, to openNDS's auth URL or to the online page."""
    runtime().funnel.hit("online")
    fas = current_fas()
    if fas is not None:
        session.pop("fas", None)  # a hid authenticates once
        if fas.level == 3:
            return await_authmon(fas, nxt)
        redir = runtime().portal_url + "/online" + (f"?continue={quote(nxt, safe='')}" if nxt else "")
        return redirect(auth_url(fas, runtime().settings.opennds_faskey, redir), code=303)
    return redirect(url_for("captive.online", **({"continue": nxt} if nxt else {})), code=303)


@bp.before_app_request
def choose_language():
    """The page language: ?lang=, then the cookie, then Accept-Language (after the app's guards)."""
    requested = request.args.get("lang")
    g.lang = negotiate(requested, request.cookies.get(_LANG_COOKIE), request.accept_languages,
                       runtime().settings.default_language)
    g.remember_lang = requested in LANGUAGES


@bp.after_app_request
def remember_language(response: Response) -> Response:
    if getattr(g, "remember_lang", False):
        response.set_cookie(_LANG_COOKIE, g.lang, max_age=365 * 86400, httponly=True, samesite="Lax",
                            secure=runtime().settings.portal_url.startswith("https://"))
    return response


@bp.app_context_processor
def template_helpers():
    lang = getattr(g, "lang", runtime().settings.default_language)
    settings = runtime().settings
    return {"t": lambda key: translate(key, lang), "lang": lang,
            "other_lang": "en" if lang == "vi" else "vi", "brand": settings.brand_color,
            "store_name": settings.store_name,
            "local_time": lambda value: i18n.format_datetime(value, lang, store_zone(settings)),
            "local_date": lambda value, short=False: i18n.format_date(value, lang, short, store_zone(settings)),
            "num": lambda value: i18n.format_number(value, lang),
            "pct": lambda value: i18n.format_percent(value, lang),
            "has_logo": store_settings.logo_path(settings.data_dir) is not None,
            "notice_link": lambda text: notice_link(text, lang)}


def continue_param() -> str | None:
    return safe_continue(request.values.get("continue"))


def limited() -> bool:
    c = client()
    keys = [f"ip:{c.ip}"] + ([f"mac:{c.mac}"] if c.mac else [])
    fas = current_fas()
    if fas is not None and not fas.verified:
        keys = [f"peer:{request.remote_addr}"]  # FAS level 1: the identity is the guest's own claim
    return not runtime().limiter.allow(*keys)


def rate_limited_page():
    return render_template("captive/error.html", message="err_rate_limited", code=429), 429


# -- pages ---------------------------------------------------------------------------------------

@bp.get("/")
def splash():
    rt = runtime()
    c = client()
    nxt = continue_param()
    if rt.visitors.online_until(c.ip) is not None:
        return redirect(url_for("captive.online", **({"continue": nxt} if nxt else {})), code=303)
    lead = rt.visitors.recognised(c) if request.args.get("form") != "1" else None
    if lead is not None:
        return render_template("captive/welcome.html", name=rt.visitors.greeting_name(lead, proven()), next=nxt)
    return render_splash(SignInForm(language=g.lang), {}, nxt, asked_again=rt.visitors.asked_again(c))


def render_splash(form: SignInForm, errors: dict[str, str], nxt: str | None, status: int = 200,
                  preview: bool = False, asked_again: bool = False):
    """The sign-in page; `preview`: the owner's look at it from the panel (portal/panel/splash.py), not counted."""
    if not errors and not preview:
        runtime().funnel.hit("splash")
    policies = consent.current_set(g.lang)
    settings = runtime().settings
    return render_template("captive/splash.html", form=form, errors=errors, next=nxt, policies=policies,
                           required=REQUIRED_PURPOSE, marketing=MARKETING_PURPOSES, analytics=ANALYTICS_PURPOSES,
                           min_age=settings.min_age, just_connect=settings.just_connect,
                           look=splash_look(settings, g.lang), preview=preview, fold=PREVIEW_FOLD,
                           asked_again=asked_again), status


@bp.get("/fas/")
def fas_entry():
    """openNDS sends captive clients here (FAS); levels 2/3 prove who they are (portal/gateway/opennds.py)."""
    rt = runtime()
    if rt.gateway.name != "opennds":
        abort(404)
    nonce = session.setdefault("fas_nonce", secrets.token_urlsafe(16))
    try:
        fas = rt.gateway.open_fas(request.args, request.remote_addr or "", nonce)
    except FasThrottled:  # its refusals were logged; a flood must not flood the log too
        return rate_limited_page()
    except InvalidFas as exc:
        current_app.logger.warning("refused fas request from %s: %s", request.remote_addr, exc)
        return render_template("captive/error.html", message="err_fas_invalid", code=400), 400
    session["fas"] = fas.to_session()
    # A level-1 query is a claim anyone can write: never greet a person by it.
    lead = rt.visitors.recognised(client()) if fas.verified else None
    if lead is not None:
        return render_template("captive/welcome.html", name=rt.visitors.greeting_name(lead, proven()),
                               next=fas.originurl)
    return render_splash(SignInForm(language=g.lang), {}, fas.originurl)


@bp.post("/fas/")
@csrf.exempt
def fas_authmon():
    """FAS level 3: openNDS's authmon polls for clients to let out (portal/gateway/opennds_authmon.py)."""
    authlist = getattr(runtime().gateway, "authlist", None)
    if authlist is None:
        abort(404)
    # Through a front the portal does not believe, the peer is the front, not the poller.
    peer = "" if forwarded_untrusted(request.environ, runtime().settings) else request.remote_addr or ""
    try:
        body = authlist.answer(request.form, peer)
    except AuthGetRefused as exc:
        current_app.logger.warning("refused authmon request from %s: %s", request.remote_addr, exc)
        return Response(f"refused: {exc.status}\n", status=exc.status, mimetype="text/plain")
    return Response(body, mimetype="text/plain", headers={"Cache-Control": "no-store"})


def await_authmon(fas: FasRequest, nxt: str | None):
    """Level 3: queue the client for authmon, then a page that waits for the router's confirmation."""
    rt = runtime()
    rhid = auth_token(fas.hid, rt.settings.opennds_faskey)
    if not rt.gateway.authlist.add(fas.gatewayhash, rhid, rt.settings.session_seconds):
        return render_template("captive/error.html", message="err_gateway_failed", code=503), 503
    session["fas_wait"] = {"gatewayhash": fas.gatewayhash, "rhid": rhid, "next": nxt}
    return redirect(url_for("captive.fas_wait"), code=303)


@bp.get("/fas/wait")
def fas_wait():
    authlist = getattr(runtime().gateway, "authlist", None)
    wait = session.get("fas_wait")
    if authlist is None or not isinstance(wait, dict):
        return redirect(url_for("captive.splash"), code=303)
    state = authlist.state(str(wait.get("gatewayhash")), str(wait.get("rhid")))
    if state == "pending":
        return render_template("captive/fas_wait.html"), 200, {"Refresh": "2", "Cache-Control": "no-store"}
    session.pop("fas_wait", None)
    if state == "done":
        nxt = safe_continue(wait.get("next"))
        return redirect(url_for("captive.online", **({"continue": nxt} if nxt else {})), code=303)
    return render_template("captive/error.html", message="err_fas_timeout", code=504), 504


@bp.post("/connect")
def connect():
    if limited():
        return rate_limited_page()
    f = request.form
    form = SignInForm(
        email=f.get("email", ""), phone=f.get("phone", ""), name=f.get("name", ""), language=g.lang,
        terms=f.get("terms") == "yes",
        marketing=frozenset(p for p in f.getlist("marketing")),
        analytics=frozenset(p for p in f.getlist("analytics")), adult=f.get("age") == "yes",
    )
    runtime().funnel.hit("submit")
    outcome = runtime().visitors.sign_in(form, client(), proven())
    nxt = continue_param()
    if not outcome.ok:
        status = {"gateway_failed": 503, None: 422}.get(outcome.errors.get("form"), 409)
        return render_splash(form, outcome.errors, nxt, status=status)
    if outcome.stored == "not_kept":
        session["notice"] = "details_not_kept"  # said plainly on the online page
    remember_claims(outcome)
    if outcome.verify_first:
        session["verify_next"] = nxt
        return redirect(url_for("captive.verify_page"), code=303)
    return finish(nxt)


@bp.post("/just-connect")
def just_connect():
    """Online on the WiFi terms alone, no contact details (setting `just_connect`)."""
    if not runtime().settings.just_connect:
        abort(404)
    if limited():
        return rate_limited_page()
    runtime().funnel.hit("submit")
    outcome = runtime().visitors.just_connect(client(), request.form.get("terms") == "yes", g.lang)
    nxt = continue_param()
    if not outcome.ok:
        status = {"gateway_failed": 503, None: 422}.get(outcome.errors.get("form"), 409)
        return render_splash(SignInForm(language=g.lang), outcome.errors, nxt, status=status)
    return finish(nxt)


@bp.post("/welcome-back")
def welcome_back():
    if limited():
        return rate_limited_page()
    nxt = continue_param()
    outcome = runtime().visitors.reconnect(client())
    if not outcome.ok:
        return render_template("captive/error.html", message="err_" + outcome.errors["form"], code=409), 409
    return finish(nxt)


@bp.get("/online")
def online():
    until = runtime().visitors.online_until(client().ip)
    if until is None:
        return redirect(url_for("captive.splash"), code=303)
    nxt = continue_param()
    return render_template("captive/online.html", until_text=until_words(until, g.lang, runtime().settings), next=nxt,
                           step=next_step(runtime().settings, g.lang, nxt), notice=session.pop("notice", None),
                           verified=session.pop("verified_notice", False), **verify_context())


@bp.get("/privacy")
def privacy():
    notice = consent.current(NOTICE, g.lang)
    sections = []
    for block in notice.text.split("\n\n"):
        heading, _, body = block.partition("\n") if block.startswith("## ") else ("", "", block)
        sections.append((heading[3:], body))
    return render_template("captive/privacy.html", notice=notice, sections=sections,
                           statements=consent.current_set(g.lang), purposes=PURPOSES)


@bp.get("/my-data")
def my_data():
    data = runtime().visitors.my_data(client(), proven(), session.get("claims", []))
    return render_template("captive/my_data.html", data=data, optional=OPTIONAL_PURPOSES,
                           purposes=PURPOSES, done=request.args.get("done"),
                           kinds=runtime().visitors.record_kinds(client()) if data else [])


@bp.post("/my-data/withdraw")
def withdraw():
    if limited():
        return rate_limited_page()
    purpose = request.form.get("purpose", "")
    outcome = runtime().visitors.withdraw(client(), purpose)
    if not outcome.ok:
        return render_template("captive/error.html", message="err_" + outcome.errors["form"], code=400), 400
    return redirect(url_for("captive.my_data", done="withdrawn"), code=303)


@bp.post("/my-data/object")
def object_():
    """An objection (to marketing and profiling: in force at once) or a restriction request."""
    if limited():
        return rate_limited_page()
    outcome = runtime().visitors.object_or_restrict(client(), request.form.get("kind", "")[:20],
                                                    request.form.get("grounds", "")[:20], proven())
    if not outcome.ok:
        if outcome.errors["form"] == "prove_first":
            return redirect(url_for("captive.my_data", done="prove_first"), code=303)
        return render_template("captive/error.html", message="err_" + outcome.errors["form"], code=400), 400
    return redirect(url_for("captive.my_data", done="objected" if outcome.scope == "restricted" else "requested"), code=303)


@bp.post("/my-data/erase")
def erase():
    if limited():
        return rate_limited_page()
    if request.form.get("confirm") != "yes":
        abort(400)
    outcome = runtime().visitors.erase(client(), proven())
    if not outcome.ok:
        return render_template("captive/error.html", message="err_" + outcome.errors["form"], code=400), 400
    session.pop("proven", None)
    return redirect(url_for("captive.my_data", done="erased" if outcome.scope == "person" else "erased_device"), code=303)


@bp.get("/logo")
def logo():
    path = store_settings.logo_path(runtime().settings.data_dir)
    if path is None:
        abort(404)
    return send_file(path, mimetype="image/png" if path.suffix == ".png" else "image/jpeg", max_age=300)


@bp.get("/picture")
def picture():
    """The sign-in page's picture (set in the panel): its type read from its first bytes, as on upload."""
    path = store_settings.picture_path(runtime().settings.data_dir)
    if path is None:
        abort(404)
    try:
        data = path.read_bytes()  # one read: a replace in between never pairs one file's type with another's bytes
    except FileNotFoundError:
        abort(404)
    found = store_settings.picture_type(data)
    if found is None:
        abort(404)
    return Response(data, mimetype=found[1], headers={"Cache-Control": "public, max-age=300"})


@bp.get("/api/captive")
def captive_api():
    """RFC 8908: what a captive-portal-aware OS asks before it opens the sign-in sheet."""
    rt = runtime()
    until = rt.visitors.online_until(client().ip)
    body = {"captive": until is None, "user-portal-url": rt.portal_url + "/",
            "venue-info-url": rt.portal_url + "/privacy"}
    if until is not None:
        body["seconds-remaining"] = max(0, int((until - utcnow()).total_seconds()))
        body["can-extend-session"] = True
    return Response(json.dumps(body), mimetype="application/captive+json",
                    headers={"Cache-Control": "private, no-store"})


# Proving an email or a phone lives in verify.py; these pages use its session helpers (imported
# last: verify.py reads this module's helpers).
from portal.captive.verify import proven, remember_claims, verify_context  # noqa: E402
