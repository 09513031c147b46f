"""The console's pages. Each view reads the session's actor, calls services, renders a template.

Writes are POST/redirect/GET: after a service accepts a change the browser is sent to the case
page by id, so a reload never repeats the change.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from datetime import date, datetime
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, flash, g, redirect, render_template, request, session, url_for
from sqlalchemy.exc import InterfaceError, OperationalError
from werkzeug.exceptions import HTTPException

from api.extensions import db
from casework.actor import Actor
from casework.db import utcnow
from casework.errors import Conflict, Forbidden, NotFound, ValidationFailed, VersionMismatch
from casework.id_number import mask_id_number
from casework.services.alerts import acknowledge, list_alerts
from casework.services.assistance import (
    case_applications,
    fire_application,
    get_application,
    raisable_kinds,
    raise_application,
    waiting_for,
)
from casework.services.auth import AuthenticationFailed, LoginThrottled, authenticate, issue_token, revoke_token
from casework.services.cases import VISIT_EVENT, case_events, fire, get_case, read_case, screen
from casework.services.follow_ups import list_visits, record_visit
from casework.services.persons import REGISTRARS, get_person, register_person
from casework.services.queries import CaseFilters, list_cases, referral_queue
from casework.services.settlements import list_settlements, record_settlement
from casework.services.stats import county_stats
from casework.services.worklist import (
    COUNT_CAP,
    event_choices,
    find_person,
    org_unit_names,
    policy_for_person,
    villages_in_area,
    work_queues,
)
from casework.views import case_view, person_view
from console import charts
from console import policy as policy_page
from console.forms import (
    CHINA,
    CHOICE_LABELS,
    FIELD_LABELS,
    FUND_LABELS,
    KIND_LABELS,
    RAISE_RULE,
    action_forms,
    assistance_forms,
    event_data,
    local_to_iso,
    money,
    raise_form,
)
from console.messages import field_errors, in_chinese
from workflows import assistance_machine
from workflows.case_machine import OPEN_STATES, RULES, STATE_LABELS, TERMINAL_STATES
from workflows.money import LAYER_LABELS, LAYERS
from workflows.policy_pack import CATEGORIES, CATEGORY_LABELS, packs

bp = Blueprint(
    "console", __name__, template_folder="templates", static_folder="static", static_url_path="/console-static"
)

log = logging.getLogger("casework.console")
PUBLIC_ENDPOINTS = ("console.login", "console.static")
PAGE_SIZE = 50

ROLE_LABELS = charts.ROLE_LABELS
SOURCE_LABELS = {
    "health_check": "健康体检",
    "family_doctor_visit": "家庭医生签约随访",
    "hospital_diagnosis": "医院诊断",
    "registry_match": "数据比对",
    "other": "其他",
}
ALERT_RULE_LABELS = {
    "not_confirmed": "筛查后逾期未确诊",
    "not_assigned": "确诊后逾期未分配医院",
    "not_admitted": "分配后逾期未入院",
    "stay_exceeded": "住院超过预期天数",
    "settlement_missing": "出院后逾期未结算",
    "referral_waiting": "转诊逾期未处理",
    "follow_up_missed": "随访逾期",
    "below_floor": "报销比例低于政策要求",
    **{rule: f"救助申请逾期未处理：{assistance_machine.STATE_LABELS[state]}"
       for state, rule in assistance_machine.OVERDUE_RULES.items()},
}  # fmt: skip
CASE_EVENT_LABELS = {
    "screen": "筛查发现",
    VISIT_EVENT: "记录随访",
    **{name: rule.label for name, rule in RULES.items()},
}
ASSISTANCE_EVENT_LABELS = {
    assistance_machine.RAISE_EVENT: "提出申请",
    assistance_machine.REVISE_EVENT: "按新结算调整申请金额",
    **{name: rule.label for name, rule in assistance_machine.RULES.items()},
}
# Who acts in the chain: the village and township reviewers (village doctors) and the county's fund.
ASSISTANCE_ROLES = tuple(sorted({rule.role for rule in assistance_machine.RULES.values()}))
ALERT_STATUS_LABELS = {"open": "待处理", "acknowledged": "已确认", "resolved": "已解除"}
SEX_LABELS = {"M": "男", "F": "女"}


# --- session, CSRF, errors ------------------------------------------------------------------------


def actor() -> Actor:
    return g.console_actor


@bp.before_request
def load_actor():
    g.console_actor = None
    token = session.get("token")
    if token:
        try:
            g.console_actor = authenticate(db.session(), token)
        except AuthenticationFailed:
            session.pop("token", None)
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    if request.method == "POST":
        sent = request.form.get("csrf", "")
        if not hmac.compare_digest(sent.encode(), session["csrf"].encode()):
            return _page("error.html", 400, title="请求已失效", message="表单已过期或来源不明，请返回重新提交。")
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    if g.console_actor is None:
        return redirect(url_for("console.login", next=request.full_path.rstrip("?")))
    return None


@bp.app_context_processor
def console_globals() -> dict[str, Any]:
    return {
        "STATE_LABELS": STATE_LABELS,
        "ROLE_LABELS": ROLE_LABELS,
        "csrf_token": lambda: session.get("csrf", ""),
        "current_actor": getattr(g, "console_actor", None),
        "china_time": china_time,
        "ASSISTANCE_ROLES": ASSISTANCE_ROLES,
        "KIND_LABELS": KIND_LABELS,
        "ASSISTANCE_STATE_LABELS": assistance_machine.STATE_LABELS,
        "FUND_LABELS": FUND_LABELS,
        "FIELD_LABELS": FIELD_LABELS,
        "CHOICE_LABELS": CHOICE_LABELS,
    }


def china_time(value: datetime | None, with_time: bool = True) -> str:
    if value is None:
        return "—"
    local = value.astimezone(CHINA)
    return local.strftime("%Y-%m-%d %H:%M" if with_time else "%Y-%m-%d")


def _page(template: str, status: int = 200, **context: Any):
    return render_template(template, **context), status


@bp.errorhandler(NotFound)
def not_found(_error: NotFound):
    # Absent and outside one's area look the same, as in the API.
    return _page("error.html", 404, title="找不到页面", message="没有这个页面，或它不在您的管辖范围内。")


@bp.errorhandler(Forbidden)
def forbidden(error: Forbidden):
    return _page("error.html", 403, title="无权操作", message="您的角色不能进行此操作。", detail=error.detail)


@bp.errorhandler(HTTPException)
def http_error(error: HTTPException):
    if error.code == 404:
        return not_found(NotFound(""))
    return _page("error.html", error.code or 500, title=error.name, message=error.description)


@bp.errorhandler(Exception)
def unexpected(error: Exception):
    if isinstance(error, OperationalError | InterfaceError):
        log.warning("database error: %s", type(error).__name__)  # no parameters: they may carry names
        return _page(
            "error.html", 503, title="暂时无法访问", message="数据库暂时不可用，请稍后重试；您的更改没有保存。"
        )
    log.exception("unhandled error in the console")
    return _page("error.html", 500, title="出错了", message="服务器无法处理此请求，请稍后重试。")


# --- login ---------------------------------------------------------------------------------------


def _safe_next(target: str | None) -> str:
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return url_for("console.home")


@bp.route("/login", methods=["GET", "POST"])
def login():
    error = None
    status = 200
    if request.method == "POST":
        username = request.form.get("username", "").strip()
        password = request.form.get("password", "")
        try:
            token, _expires = issue_token(db.session(), username, password)
        except LoginThrottled as exc:
            error, status = f"登录失败次数过多，请 {exc.retry_after // 60 + 1} 分钟后再试。", 429
        except AuthenticationFailed:
            error, status = "用户名或密码错误。", 401
        else:
            next_page = request.form.get("next")
            session.clear()
            session.permanent = True
            session["token"] = token
            session["csrf"] = secrets.token_urlsafe(32)  # a new session gets a new CSRF token
            return redirect(_safe_next(next_page))
    return _page("login.html", status, error=error, next=request.values.get("next", ""))


@bp.post("/logout")
def logout():
    token = session.get("token")
    if token:
        revoke_token(db.session(), token)
    session.clear()
    flash("您已退出登录。")
    return redirect(url_for("console.login"))


# --- home ----------------------------------------------------------------------------------------


def _list_link(**filters: Any) -> str:
    return url_for("console.cases") + "?" + urlencode({k: v for k, v in filters.items() if v})


@bp.get("/")
def home():
    who = actor()
    now = utcnow()
    context: dict[str, Any] = {"now": now, "cap": COUNT_CAP}
    if who.role == "county_coordinator":
        # Where the next step is the coordinator's: confirm or exclude, assign, follow up or close;
        # and the referrals it waits for.
        piles = work_queues(db.session(), who, ("screened", "confirmed", "treated", "follow_up", "referred"), now=now)
        context["queues"] = [(q, _list_link(state=q.state)) for q in piles[:-1]]
        context["watch"] = [(piles[-1], _list_link(state="referred"))]
    elif who.role == "hospital":
        labels = {"assigned": "待入院", "in_treatment": "在院", "treated": "待结算"}
        piles = work_queues(db.session(), who, tuple(labels), hospital=who.org_unit_code, now=now)
        context["queues"] = [(q, _list_link(state=q.state, hospital=who.org_unit_code)) for q in piles]
        context["queue_labels"] = labels
    elif who.role == "expert":
        context["referrals"] = [
            (case_view(c, who, now), (now - c.entered_state_at).total_seconds() / 3600)
            for c in referral_queue(db.session(), who)[0]  # the oldest page; the full queue is the case list
        ]
    else:
        context["stats"] = county_stats(db.session(), who, now)
        context["states"] = OPEN_STATES + TERMINAL_STATES
        context["list_link"] = _list_link
    if who.role in ASSISTANCE_ROLES:
        context["assistance"], context["assistance_more"] = waiting_for(db.session(), who, limit=8, now=now)
    context["alerts_open"] = len(list_alerts(db.session(), who, "open", limit=100)[0])
    return _page("home.html", **context)


# --- case list and case page -----------------------------------------------------------------------


@bp.get("/cases")
def cases():
    who = actor()
    now = utcnow()
    args = request.args
    overdue = {"1": True, "0": False}.get(args.get("overdue", ""))
    filters = CaseFilters(
        args.get("state") or None, args.get("region") or None, args.get("hospital") or None,
        args.get("disease") or None, overdue,
    )  # fmt: skip
    before = args.get("before", "")
    errors: dict[str, list[str]] = {}
    try:
        page, next_before = list_cases(
            db.session(), who, filters, PAGE_SIZE, int(before) if before.isdigit() else None, now
        )
    except ValidationFailed as exc:
        page, next_before, errors = [], None, field_errors(exc.errors)
    rows = [case_view(c, who, now) for c in page]
    names = org_unit_names(db.session(), [r["county"] for r in rows])
    next_link = first_link = None
    if next_before:
        next_link = url_for("console.cases") + "?" + urlencode({**args.to_dict(), "before": next_before})
    if before:
        first_link = url_for("console.cases") + "?" + urlencode({k: v for k, v in args.items() if k != "before"})
    status = 422 if errors else 200
    return _page(
        "cases.html", status, rows=rows, names=names, args=args, errors=errors, next_link=next_link,
        first_link=first_link,
    )  # fmt: skip


def _case_context(case_id: int, now: datetime) -> dict[str, Any]:
    who = actor()
    view = read_case(db.session(), who, case_id, now)  # logs a full ID shown, as the API does
    events = case_events(db.session(), who, case_id)
    alerts, _ = list_alerts(db.session(), who, case_id=case_id, limit=100)
    names = org_unit_names(
        db.session(), [view["county"], *(e.org_unit_code for e in events), *(a.org_unit_code for a in alerts)]
    )
    return {
        "case": view,
        "events": events,
        "visits": list_visits(db.session(), who, case_id),
        "settlements": list_settlements(db.session(), who, case_id),
        "alerts": [a for a in alerts if a.status != "resolved"],
        "names": names,
        "event_labels": CASE_EVENT_LABELS,
        "person": _person_rows(view["person"]),
        "rule_labels": ALERT_RULE_LABELS,
        "layer_labels": LAYER_LABELS,
        "policy_name": packs()[view["policy"]].name,
    }


def _person_rows(person: dict[str, Any]) -> list[tuple[str, str]]:
    """The person through whichever keys the view gives this viewer (birth date or age)."""
    rows = [("姓名", person.get("name", "")), ("身份证号", person.get("id_number", ""))]
    if person.get("sex"):
        rows.append(("性别", SEX_LABELS.get(person["sex"], person["sex"])))
    if person.get("birth_date"):
        rows.append(("出生日期", str(person["birth_date"])))
    if person.get("age") is not None:
        rows.append(("年龄", f"{person['age']} 岁"))
    if person.get("category"):
        rows.append(("人员类别", CATEGORY_LABELS.get(person["category"], person["category"])))
    return rows


def _render_case(
    case_id: int,
    status: int = 200,
    failed: str | None = None,
    submitted=None,
    errors=None,
    assist: dict[str, Any] | None = None,
    **extra,
):
    """The case page; ``failed``/``submitted``/``errors`` reopen a case event's form, ``assist`` an
    application's (``application``: its id or "new", ``event``, ``form``, ``errors``)."""
    now = utcnow()
    context = _case_context(case_id, now)
    allowed = context["case"]["allowed_events"]
    choices = event_choices(db.session(), actor(), case_id) if allowed else {}
    disease = packs()[context["case"]["policy"]].disease(context["case"]["disease"]["code"])
    context["forms"] = action_forms(allowed, choices, failed, submitted, errors, disease)
    context.update(_assistance_context(case_id, context["case"], now, assist or {}))
    codes = [e["org_unit_code"] for a in context["applications"] for e in a["events"]]
    context["names"] = {**context["names"], **org_unit_names(db.session(), codes)}
    context.update(extra)
    return _page("case.html", status, **context)


def _assistance_context(case_id: int, view: dict[str, Any], now: datetime, failed: dict[str, Any]) -> dict[str, Any]:
    """The case's applications, each with its history and the review steps the viewer may take, and the
    coordinator's form raising a new one."""
    who = actor()
    local = now.astimezone(CHINA)
    applications = case_applications(db.session(), who, case_id, now)
    for app in applications:
        mine = failed if failed.get("application") == app["id"] else {}
        app["forms"] = assistance_forms(
            app, mine.get("event"), mine.get("form"), mine.get("errors"), local.date().isoformat()
        )
    kinds = raisable_kinds(who, view["county"], view["policy"])
    mine = failed if failed.get("application") == "new" else {}
    return {
        "applications": applications,
        "raise_form": raise_form(kinds, local.year, mine.get("form"), mine.get("errors")) if kinds else None,
        "assistance_event_labels": ASSISTANCE_EVENT_LABELS,
    }


@bp.get("/cases/<int:case_id>")
def case_page(case_id: int):
    return _render_case(case_id)


@bp.post("/cases/<int:case_id>/events/<event>")
def fire_event(case_id: int, event: str):
    rule = RULES.get(event)
    if rule is None:
        raise NotFound(event)
    form = request.form.to_dict()
    data, reason, errors = event_data(rule, form)
    version = form.get("version", "")
    if errors or not version.isdigit():
        return _render_case(case_id, 422, event, form, errors or {"version": ["缺少版本号"]})
    try:
        result = fire(db.session(), case_id, event, actor(), data, int(version), reason)
    except VersionMismatch:
        current = case_view(get_case(db.session(), actor(), case_id), actor(), utcnow())
        stale = f"其他用户已经更新了此案件，当前状态为「{current['state_label']}」。请查看最新情况后再操作。"
        return _render_case(case_id, 409, stale=stale)
    except ValidationFailed as exc:
        return _render_case(case_id, 422, event, form, field_errors(exc.errors))
    except Conflict as exc:
        return _render_case(case_id, 409, stale=f"此操作现在不能进行：{in_chinese(exc.detail)}")
    flash(f"已完成：{rule.label}")
    return redirect(url_for("console.case_page", case_id=result["id"]))


# --- the assistance review chain --------------------------------------------------------------------


def _to_application(case_id: int, application_id: int):
    return redirect(url_for("console.case_page", case_id=case_id) + f"#assistance-{application_id}")


@bp.post("/cases/<int:case_id>/assistance")
def raise_assistance(case_id: int):
    form = request.form.to_dict()
    data, _reason, errors = event_data(RAISE_RULE, form)
    if errors:
        return _render_case(case_id, 422, assist={"application": "new", "form": form, "errors": errors})
    try:
        app = raise_application(db.session(), actor(), case_id, data)
    except ValidationFailed as exc:
        return _render_case(
            case_id, 422, assist={"application": "new", "form": form, "errors": field_errors(exc.errors)}
        )
    except Conflict as exc:
        failed = {"application": "new", "form": form, "errors": {"kind": [in_chinese(exc.detail)]}}
        return _render_case(case_id, 409, assist=failed)
    flash(f"已提出{KIND_LABELS[app.kind]}申请，等待村（居）审核。")
    return _to_application(case_id, app.id)


@bp.post("/assistance/<int:application_id>/events/<event>")
def fire_assistance(application_id: int, event: str):
    rule = assistance_machine.RULES.get(event)
    if rule is None:
        raise NotFound(event)
    case_id = get_application(db.session(), actor(), application_id).case_id  # outside the area: 404
    form = request.form.to_dict()
    data, reason, errors = event_data(rule, form)
    version = form.get("version", "")
    failed = {"application": application_id, "event": event, "form": form}
    if errors or not version.isdigit():
        return _render_case(case_id, 422, assist={**failed, "errors": errors or {"version": ["缺少版本号"]}})
    try:
        fire_application(db.session(), actor(), application_id, event, data, int(version), reason)
    except VersionMismatch:
        current = get_application(db.session(), actor(), application_id)
        label = assistance_machine.STATE_LABELS[current.state]
        stale = f"其他用户已经处理了此救助申请，当前状态为「{label}」。请查看最新情况后再操作。"
        return _render_case(case_id, 409, assist_stale=stale)
    except ValidationFailed as exc:
        return _render_case(case_id, 422, assist={**failed, "errors": field_errors(exc.errors)})
    except Conflict as exc:
        return _render_case(case_id, 409, assist_stale=f"此操作现在不能进行：{in_chinese(exc.detail)}")
    flash(f"已完成：{rule.label}")
    return _to_application(case_id, application_id)


@bp.get("/assistance")
def assistance_queue():
    """The applications waiting for the viewer's step, most urgent first."""
    who = actor()
    items, more = waiting_for(db.session(), who, limit=PAGE_SIZE) if who.role in ASSISTANCE_ROLES else ([], False)
    return _page("assistance.html", items=items, more=more)


# --- register and screen ---------------------------------------------------------------------------


@bp.route("/register", methods=["GET", "POST"])
def register():
    who = actor()
    form = request.form.to_dict() if request.method == "POST" else {}
    errors: dict[str, list[str]] = {}
    existing = None
    if request.method == "POST":
        since = _date(form.get("category_since", ""))
        if since is None:
            errors["category_since"] = ["请填写正确的日期"]
        else:
            try:
                person = register_person(
                    db.session(),
                    who,
                    id_number=form.get("id_number", ""),
                    name=form.get("name", ""),
                    village_code=form.get("village_code", ""),
                    category=form.get("category", ""),
                    category_since=since,
                )
            except ValidationFailed as exc:
                errors = field_errors(exc.errors)
            except Conflict:
                errors = {"id_number": ["此身份证号已登记"]}
                existing = find_person(db.session(), who, form.get("id_number", ""))
            else:
                flash("已登记，请填写筛查信息。")
                return redirect(url_for("console.screen_case", person=person["id"]))
    return _page(
        "register.html",
        422 if errors else 200,
        form=form,
        errors=errors,
        existing=existing.id if existing is not None else None,
        villages=villages_in_area(db.session(), who) if who.role in REGISTRARS else [],
        categories=[(c, CATEGORY_LABELS.get(c, c)) for c in CATEGORIES],
    )


def _date(value: str) -> date | None:
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        return None


@bp.route("/screen", methods=["GET", "POST"])
def screen_case():
    who = actor()
    now = utcnow()
    form = request.form.to_dict() if request.method == "POST" else {}
    errors: dict[str, list[str]] = {}
    person_id = request.values.get("person", "")
    if request.method == "POST" and not person_id.isdigit():
        # Looking a person up by ID number is a POST: the number never goes into a URL or history.
        found = find_person(db.session(), who, form.get("id_number", ""))
        if found is not None:
            return redirect(url_for("console.screen_case", person=found.id))
        errors["id_number"] = ["辖区内没有登记此身份证号，请先登记"]
    person = pack = None
    if person_id.isdigit():
        found = get_person(db.session(), who, int(person_id))
        person = person_view(found, mask_id_number(found.id_number), True)
        pack = policy_for_person(db.session(), who, found.id, now.astimezone(CHINA).date())
    if request.method == "POST" and person is not None:
        screened_at = None
        try:
            screened_at = datetime.fromisoformat(local_to_iso(form.get("screened_at", "")))
        except ValueError:
            errors["screened_at"] = ["请填写正确的日期时间"]
        if screened_at is not None:
            try:
                case = screen(
                    db.session(),
                    who,
                    person_id=person["id"],
                    disease_code=form.get("disease_code", ""),
                    source=form.get("source", "other"),
                    screened_at=screened_at,
                    note=form.get("note") or None,
                )
            except ValidationFailed as exc:
                errors = field_errors(exc.errors)
            except Conflict:
                errors = {"disease_code": ["此人该病种已有未结案的案件"]}
            else:
                flash("已建立筛查案件。")
                return redirect(url_for("console.case_page", case_id=case["id"]))
    diseases = [(d.code, d.name_zh) for d in pack.diseases.values()] if pack else []
    return _page(
        "screen.html",
        422 if errors else 200,
        form=form,
        errors=errors,
        person=person,
        pack=pack,
        diseases=diseases,
        sources=SOURCE_LABELS,
        default_time=now.astimezone(CHINA).strftime("%Y-%m-%dT%H:%M"),
    )


# --- bill and follow-up visit ----------------------------------------------------------------------


@bp.route("/cases/<int:case_id>/bill", methods=["GET", "POST"])
def bill(case_id: int):
    who = actor()
    view = case_view(get_case(db.session(), who, case_id), who, utcnow())
    if who.role != "hospital":
        raise Forbidden("designated hospitals record settlements")
    form = request.form.to_dict() if request.method == "POST" else {}
    errors: dict[str, list[str]] = {}
    if request.method == "POST":
        amounts = {}
        for name in ("total", "in_policy", "own_payment", *LAYERS):
            amount = money(form.get(name, ""))
            if amount is None:
                errors[name] = ["请填写金额，如 1234.50"]
            amounts[name] = amount
        moments = {}
        for name in ("admitted_at", "discharged_at"):
            raw = form.get(name, "").strip()
            try:
                moments[name] = datetime.fromisoformat(local_to_iso(raw)) if raw else None
            except ValueError:
                errors[name] = ["请填写正确的日期时间"]
        if moments.get("discharged_at") is None and "discharged_at" not in errors:
            errors["discharged_at"] = ["必填"]
        if not errors:
            try:
                record_settlement(
                    db.session(),
                    who,
                    case_id,
                    kind=form.get("kind", "inpatient"),
                    admitted_at=moments["admitted_at"],
                    discharged_at=moments["discharged_at"],
                    referral_compliant=form.get("referral_compliant") == "on",
                    special_treatment=form.get("special_treatment") == "on",
                    **amounts,
                )
            except ValidationFailed as exc:
                errors = field_errors(exc.errors)
            except Conflict as exc:
                errors = {"kind": [in_chinese(exc.detail) if "admission" not in exc.detail else "此案件没有入院记录"]}
            else:
                flash("结算已登记。")
                return redirect(url_for("console.case_page", case_id=case_id))
    return _page("bill.html", 422 if errors else 200, case=view, form=form, errors=errors, layers=LAYER_LABELS)


@bp.route("/cases/<int:case_id>/visit", methods=["GET", "POST"])
def visit(case_id: int):
    who = actor()
    view = case_view(get_case(db.session(), who, case_id), who, utcnow())
    form = request.form.to_dict() if request.method == "POST" else {}
    errors: dict[str, list[str]] = {}
    if request.method == "POST":
        moments = {}
        for name in ("visited_at", "next_due_at"):
            raw = form.get(name, "").strip()
            try:
                moments[name] = datetime.fromisoformat(local_to_iso(raw)) if raw else None
            except ValueError:
                errors[name] = ["请填写正确的日期时间"]
        if moments.get("visited_at") is None and "visited_at" not in errors:
            errors["visited_at"] = ["必填"]
        if not form.get("findings", "").strip():
            errors["findings"] = ["必填"]
        if not errors:
            try:
                record_visit(
                    db.session(),
                    who,
                    case_id,
                    visited_at=moments["visited_at"],
                    findings=form["findings"].strip(),
                    next_due_at=moments["next_due_at"],
                )
            except ValidationFailed as exc:
                errors = field_errors(exc.errors)
            except Conflict:
                errors = {"visited_at": ["案件不在随访阶段"]}
            else:
                flash("随访已记录。")
                return redirect(url_for("console.case_page", case_id=case_id))
    now_local = utcnow().astimezone(CHINA).strftime("%Y-%m-%dT%H:%M")
    return _page("visit.html", 422 if errors else 200, case=view, form=form, errors=errors, default_time=now_local)


# --- alerts ----------------------------------------------------------------------------------------


@bp.get("/alerts")
def alerts():
    who = actor()
    status = request.args.get("status", "open")
    before = request.args.get("before", "")
    page, next_before = list_alerts(
        db.session(), who, status or None, limit=PAGE_SIZE, before_id=int(before) if before.isdigit() else None
    )
    names = org_unit_names(db.session(), [a.org_unit_code for a in page])
    next_link = url_for("console.alerts", status=status, before=next_before) if next_before else None
    return _page(
        "alerts.html",
        alerts=page,
        names=names,
        alert_status=status,
        next_link=next_link,
        rule_labels=ALERT_RULE_LABELS,
        status_labels=ALERT_STATUS_LABELS,
    )


@bp.post("/alerts/<int:alert_id>/acknowledge")
def acknowledge_alert(alert_id: int):
    try:
        acknowledge(db.session(), actor(), alert_id)
    except Forbidden:
        flash("只有预警所在单位可以确认此预警。")
    else:
        flash("预警已确认。")
    return redirect(_safe_next(request.form.get("next")))


# --- statistics and the diagram ---------------------------------------------------------------------


@bp.get("/stats")
def stats():
    who = actor()
    if who.role not in ("supervisor", "county_coordinator", "admin"):
        raise Forbidden("statistics are for supervisors and coordinators")
    rows = county_stats(db.session(), who, utcnow())
    by_state = {s: sum(r["cases_by_state"].get(s, 0) for r in rows) for s in OPEN_STATES + TERMINAL_STATES}
    label = {r["county"]: r["county_name"] or r["county"] for r in rows}
    charts_out = {
        "by_state": charts.bar_chart("各状态案件数", [(STATE_LABELS[s], n) for s, n in by_state.items()], " 件"),
        "by_county": charts.bar_chart(
            "各县案件数", [(label[r["county"]], sum(r["cases_by_state"].values())) for r in rows], " 件"
        ),
        "overdue": charts.bar_chart("各县逾期案件数", [(label[r["county"]], r["overdue"]) for r in rows], " 件"),
        "ratio": charts.bar_chart(
            "各县住院实际报销比例（均值）",
            [(label[r["county"]], float(r["mean_actual_ratio"] or 0)) for r in rows],
            percent=True,
        ),
        "shortfall": charts.bar_chart(
            "各县低于政策要求的结算（笔）", [(label[r["county"]], r["shortfalls"]["count"]) for r in rows], " 笔"
        ),
    }
    return _page("stats.html", rows=rows, by_state=by_state, charts=charts_out, list_link=_list_link)


@bp.get("/policies/<code>")
def policy(code: str):
    """A policy pack's figures, each marked where the pack assumes it rather than quotes its seed."""
    pack = packs().get(code)
    if pack is None:
        raise NotFound(code)
    return _page(
        "policy.html",
        pack=pack,
        deadlines=policy_page.deadline_rows(pack),
        money=policy_page.money_rows(pack),
        category_labels=CATEGORY_LABELS,
    )


@bp.get("/diagram")
def diagram():
    return _page("diagram.html", svg=charts.state_diagram(), table=charts.transition_table())
