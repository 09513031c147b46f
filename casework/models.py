"""The persistent model: org units, hospitals, expert groups, persons, cases, case events, users."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TextClause,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, declared_attr, mapped_column, relationship

from casework.db import Base, JSONDocument, ScaledDecimal, UTCDateTime, utcnow
from workflows import assistance_machine as assistance
from workflows.case_machine import HOSPITAL_LEVELS, OPEN_STATES, STATE_NAMES
from workflows.money import KINDS as SETTLEMENT_KINDS
from workflows.policy_pack import CATEGORIES, HOSPITAL_GRADES

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets a bigint identity.
BigId = BigInteger().with_variant(Integer(), "sqlite")

REGION_LEVELS = ("province", "city", "county", "township", "village")
ORG_KINDS = (*REGION_LEVELS, "hospital", "expert_group")
EXPERT_LEVELS = ("municipal", "provincial")
ROLES = ("admin", "supervisor", "county_coordinator", "village_doctor", "hospital", "expert")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class OrgUnit(Base):
    """Anything a user can belong to: a region (GB/T 2260 and statistical codes), a hospital or an
    expert group. Hospitals and groups hang under the region they sit in, so one tree serves
    supervisors' subtrees and the alert escalation ladder alike."""

    __tablename__ = "org_units"
    __table_args__ = (CheckConstraint(_in("kind", ORG_KINDS), name="kind"),)

    code: Mapped[str] = mapped_column(String(20), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(20))
    parent_code: Mapped[str | None] = mapped_column(ForeignKey("org_units.code"), index=True)

    parent: Mapped[OrgUnit | None] = relationship(remote_side=[code])


class _PlacedUnit:
    """A hospital or an expert group: an org unit of its own, with a level, sitting in a region."""

    code: Mapped[str] = mapped_column(ForeignKey("org_units.code"), primary_key=True)
    level: Mapped[str] = mapped_column(String(20))
    region_code: Mapped[str] = mapped_column(ForeignKey("org_units.code"), index=True)

    @declared_attr
    def org_unit(cls) -> Mapped[OrgUnit]:
        return relationship(foreign_keys=[cls.code])

    @property
    def name(self) -> str:
        return self.org_unit.name


class Hospital(_PlacedUnit, Base):
    __tablename__ = "hospitals"
    __table_args__ = (
        CheckConstraint(_in("level", HOSPITAL_LEVELS), name="level"),
        CheckConstraint(_in("grade", HOSPITAL_GRADES), name="grade"),
    )

    # 医院等级 (一级/二级/三级): some packs set the ratio by grade, not only by level (seed 001 第2条).
    # Unknown (NULL) until the county enters it; the level's ratio applies meanwhile.
    grade: Mapped[str | None] = mapped_column(String(10))


class HospitalDesignation(Base):
    """A hospital is designated (定点) for a disease under one policy pack."""

    __tablename__ = "hospital_designations"

    hospital_code: Mapped[str] = mapped_column(ForeignKey("hospitals.code"), primary_key=True)
    policy_code: Mapped[str] = mapped_column(String(60), primary_key=True)
    disease_code: Mapped[str] = mapped_column(String(60), primary_key=True)

    __table_args__ = (Index(None, "policy_code", "disease_code"),)


class ExpertGroup(_PlacedUnit, Base):
    __tablename__ = "expert_groups"
    __table_args__ = (CheckConstraint(_in("level", EXPERT_LEVELS), name="level"),)


class ExpertGroupPartner(Base):
    """Higher-level or partner hospitals (对口支援医院) an expert group can accept a patient into."""

    __tablename__ = "expert_group_partners"

    group_code: Mapped[str] = mapped_column(ForeignKey("expert_groups.code"), primary_key=True)
    hospital_code: Mapped[str] = mapped_column(ForeignKey("hospitals.code"), primary_key=True)


class Person(Base):
    __tablename__ = "persons"
    __table_args__ = (
        CheckConstraint(_in("category", CATEGORIES), name="category"),
        CheckConstraint("sex IN ('M', 'F')", name="sex"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    id_number: Mapped[str] = mapped_column(String(18), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    sex: Mapped[str] = mapped_column(String(1))
    birth_date: Mapped[date] = mapped_column(Date)
    village_code: Mapped[str] = mapped_column(ForeignKey("org_units.code"), index=True)
    category: Mapped[str] = mapped_column(String(30))
    category_since: Mapped[date] = mapped_column(Date)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class PersonCategory(Base):
    """Eligibility history: the person's category from a date on, as a registry said it. Never
    overwritten; ``Person.category`` mirrors the newest entry."""

    __tablename__ = "person_categories"
    __table_args__ = (
        UniqueConstraint("person_id", "since", "category"),
        CheckConstraint(_in("category", CATEGORIES), name="category"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("persons.id"))
    category: Mapped[str] = mapped_column(String(30))
    since: Mapped[date] = mapped_column(Date)
    source: Mapped[str] = mapped_column(String(40))  # "roster:<file name>", "api", "import"
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)


_open = _in("state", OPEN_STATES)
DUE_OPEN_INDEX = "ix_cases_due_open"


def case_is_open() -> TextClause:
    """``state IN (<open states>)`` as the very text of the partial indexes' WHERE clause.

    SQLite considers a partial index only when the query repeats the index's predicate; an IN list
    of bound parameters (what ``Case.state.in_(OPEN_STATES)`` sends) never qualifies."""
    return text(_open)


class Case(Base):
    """One patient case. The row holds the current position; the events hold the history, and
    :func:`casework.services.cases.replay` rebuilds this row's workflow fields from them."""

    __tablename__ = "cases"
    __table_args__ = (
        CheckConstraint(_in("state", STATE_NAMES), name="state"),
        CheckConstraint("version >= 1", name="version"),
        # One open case per person and disease; closed ones may be many (and reopen checks this).
        Index(
            "uq_cases_open_person_disease",
            "person_id",
            "disease_code",
            unique=True,
            sqlite_where=text(_open),
            postgresql_where=text(_open),
        ),
        # The overdue scan: open cases by deadline.
        Index(DUE_OPEN_INDEX, "due_at", sqlite_where=text(_open), postgresql_where=text(_open)),
        Index("ix_cases_county_id", "county_code", "id"),
        Index("ix_cases_state_id", "state", "id"),
        # Village doctors and ``region=<township>``: one equality, already in list order.
        Index("ix_cases_township_id", "township_code", "id"),
        Index("ix_cases_village_id", "village_code", "id"),
        # The console's piles of work: the most urgent cases per state of a county or a hospital.
        Index("ix_cases_county_state_due", "county_code", "state", "due_at"),
        Index("ix_cases_hospital_state_due", "hospital_code", "state", "due_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("persons.id"), index=True)
    disease_code: Mapped[str] = mapped_column(String(60))
    policy_code: Mapped[str] = mapped_column(String(60))
    category: Mapped[str] = mapped_column(String(30))  # eligibility at screening, kept as a fact
    state: Mapped[str] = mapped_column(String(20))
    version: Mapped[int] = mapped_column(Integer, default=1)
    # Where the person lives, copied at screening: scoping is then plain indexed equality.
    village_code: Mapped[str] = mapped_column(ForeignKey("org_units.code"))
    township_code: Mapped[str] = mapped_column(ForeignKey("org_units.code"))
    county_code: Mapped[str] = mapped_column(ForeignKey("org_units.code"))
    city_code: Mapped[str] = mapped_column(ForeignKey("org_units.code"), index=True)
    province_code: Mapped[str] = mapped_column(ForeignKey("org_units.code"), index=True)
    hospital_code: Mapped[str | None] = mapped_column(ForeignKey("hospitals.code"), index=True)
    referral_group_code: Mapped[str | None] = mapped_column(ForeignKey("expert_groups.code"), index=True)
    referred_from: Mapped[str | None] = mapped_column(String(20))
    source: Mapped[str] = mapped_column(String(30))
    note: Mapped[str | None] = mapped_column(Text)
    screened_at: Mapped[datetime] = mapped_column(UTCDateTime)
    entered_state_at: Mapped[datetime] = mapped_column(UTCDateTime)
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The day the person stopped being eligible under the case's policy while the case was open:
    # the case keeps its screening category and goes on, flagged for the coordinator to decide.
    eligibility_lost_on: Mapped[date | None] = mapped_column(Date)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    person: Mapped[Person] = relationship()
    hospital: Mapped[Hospital | None] = relationship()
    referral_group: Mapped[ExpertGroup | None] = relationship()


class CaseEvent(Base):
    """Append-only history: one row per accepted transition, numbered per case from 1."""

    __tablename__ = "case_events"
    __table_args__ = (UniqueConstraint("case_id", "seq"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"))
    seq: Mapped[int] = mapped_column(Integer)
    event: Mapped[str] = mapped_column(String(30))
    from_state: Mapped[str | None] = mapped_column(String(20))
    to_state: Mapped[str] = mapped_column(String(20))
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    actor_username: Mapped[str] = mapped_column(String(80))
    org_unit_code: Mapped[str | None] = mapped_column(ForeignKey("org_units.code"))
    at: Mapped[datetime] = mapped_column(UTCDateTime)  # when it was recorded
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)  # when it happened in the world
    data: Mapped[dict[str, Any]] = mapped_column(JSONDocument, default=dict)
    reason: Mapped[str | None] = mapped_column(Text)


class CaseHolder(Base):
    """Every hospital and expert group that has held a case: they keep seeing it afterwards."""

    __tablename__ = "case_holders"
    __table_args__ = (Index(None, "org_unit_code", "case_id"),)

    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), primary_key=True)
    org_unit_code: Mapped[str] = mapped_column(ForeignKey("org_units.code"), primary_key=True)


class User(Base):
    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint(_in("role", ROLES), name="role"),
        # Admins run the system and belong to no org unit; everybody else to exactly one.
        CheckConstraint("role = 'admin' OR org_unit_code IS NOT NULL", name="org_unit"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(80), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(30))
    org_unit_code: Mapped[str | None] = mapped_column(ForeignKey("org_units.code"), index=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    org_unit: Mapped[OrgUnit | None] = relationship()


class AuthToken(Base):
    """A bearer token, stored as its SHA-256 only: a leaked table opens no session."""

    __tablename__ = "auth_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship()


class LoginFailure(Base):
    """Failed logins per username (known or not) and client address, for throttling across every
    API worker: guesses from one address slow that address down, not the account's owner."""

    __tablename__ = "login_failures"
    __table_args__ = (Index(None, "username", "client", "at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(80))
    client: Mapped[str] = mapped_column(String(64), server_default="")
    at: Mapped[datetime] = mapped_column(UTCDateTime)


class AccessLog(Base):
    """Who read a full person record (unmasked ID number), when: PIPL asks for it."""

    __tablename__ = "access_log"
    __table_args__ = (Index(None, "person_id", "at"), Index("ix_access_log_username_id", "username", "id"))

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    username: Mapped[str] = mapped_column(String(80))
    person_id: Mapped[int] = mapped_column(ForeignKey("persons.id"))
    what: Mapped[str] = mapped_column(String(60))
    at: Mapped[datetime] = mapped_column(UTCDateTime)


ALERT_STATUSES = ("open", "acknowledged", "resolved")


class Alert(Base):
    """One overdue condition: a case past its deadline in one step. Raised once, however many
    schedulers run (the unique key), resolved by the transition that ends the step."""

    __tablename__ = "alerts"
    __table_args__ = (
        UniqueConstraint("case_id", "rule", "due_at"),
        CheckConstraint(_in("status", ALERT_STATUSES), name="status"),
        Index("ix_alerts_status_escalate", "status", "escalated_at"),
        Index(None, "org_unit_code", "status"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    rule: Mapped[str] = mapped_column(String(40))
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    raised_at: Mapped[datetime] = mapped_column(UTCDateTime)
    level: Mapped[int] = mapped_column(Integer, default=0)  # escalation climbs so far
    org_unit_code: Mapped[str] = mapped_column(ForeignKey("org_units.code"))  # who must act now
    status: Mapped[str] = mapped_column(String(15), default="open")
    escalated_at: Mapped[datetime] = mapped_column(UTCDateTime)  # last climb, or raising
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    acknowledged_by: Mapped[str | None] = mapped_column(String(80))
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AlertEscalation(Base):
    """Each climb of an unacknowledged alert to the org unit above."""

    __tablename__ = "alert_escalations"
    __table_args__ = (UniqueConstraint("alert_id", "level"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id"))
    level: Mapped[int] = mapped_column(Integer)
    from_org_unit: Mapped[str] = mapped_column(ForeignKey("org_units.code"))
    to_org_unit: Mapped[str] = mapped_column(ForeignKey("org_units.code"))
    at: Mapped[datetime] = mapped_column(UTCDateTime)


class FollowUpVisit(Base):
    """A follow-up visit (随访): who saw the patient, when, what they found, when the next is due."""

    __tablename__ = "follow_up_visits"
    __table_args__ = (Index(None, "case_id", "visited_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"))
    visited_at: Mapped[datetime] = mapped_column(UTCDateTime)
    visitor: Mapped[str] = mapped_column(String(80))
    org_unit_code: Mapped[str | None] = mapped_column(ForeignKey("org_units.code"))
    findings: Mapped[str] = mapped_column(Text)
    next_due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)


Money = ScaledDecimal(2)
Ratio = ScaledDecimal(4)


class Settlement(Base):
    """One bill of one stay (一站式结算), as the hospital recorded it, and what the pack makes of it.

    The ratios and shortfall are computed once, at recording, against the case's own policy pack:
    county statistics are then plain SQL aggregates.
    """

    __tablename__ = "settlements"
    __table_args__ = (
        CheckConstraint("total >= 0 AND in_policy >= 0 AND in_policy <= total AND own_payment >= 0", name="amounts"),
        CheckConstraint(_in("kind", SETTLEMENT_KINDS), name="kind"),
        Index(None, "case_id", "id"),
        Index(None, "person_id", "year"),
        # The scheduler's below-floor check reads recent bills below their floors only.
        Index(
            "ix_settlements_below_floor",
            "recorded_at",
            sqlite_where=text("below_floor"),
            postgresql_where=text("below_floor"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"))
    person_id: Mapped[int] = mapped_column(ForeignKey("persons.id"))
    hospital_code: Mapped[str] = mapped_column(ForeignKey("hospitals.code"))
    kind: Mapped[str] = mapped_column(String(20))
    admitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    discharged_at: Mapped[datetime] = mapped_column(UTCDateTime)
    year: Mapped[int] = mapped_column(Integer)  # calendar year of discharge, for yearly caps and thresholds
    referral_compliant: Mapped[bool] = mapped_column(Boolean)
    special_treatment: Mapped[bool] = mapped_column(Boolean)
    total: Mapped[Decimal] = mapped_column(Money)
    in_policy: Mapped[Decimal] = mapped_column(Money)
    basic_insurance: Mapped[Decimal] = mapped_column(Money)
    critical_illness_insurance: Mapped[Decimal] = mapped_column(Money)
    medical_assistance: Mapped[Decimal] = mapped_column(Money)
    government_backstop: Mapped[Decimal] = mapped_column(Money)
    charity: Mapped[Decimal] = mapped_column(Money)
    other: Mapped[Decimal] = mapped_column(Money)
    own_payment: Mapped[Decimal] = mapped_column(Money)
    ratio_on_total: Mapped[Decimal | None] = mapped_column(Ratio)
    ratio_on_in_policy: Mapped[Decimal | None] = mapped_column(Ratio)
    below_floor: Mapped[bool] = mapped_column(Boolean)
    shortfall: Mapped[Decimal] = mapped_column(Money)
    recorded_by: Mapped[str] = mapped_column(String(80))
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)


_assistance_open = _in("state", assistance.OPEN_STATES)


class AssistanceApplication(Base):
    """An application for second assistance or charity aid on a case, and where its review stands.

    Like a case: the row holds the position, the events hold the history; one per person, kind and year.
    """

    __tablename__ = "assistance_applications"
    __table_args__ = (
        CheckConstraint(_in("state", assistance.OPEN_STATES + assistance.TERMINAL_STATES), name="state"),
        CheckConstraint(_in("kind", tuple(assistance.KINDS)), name="kind"),
        CheckConstraint("version >= 1", name="version"),
        UniqueConstraint("person_id", "kind", "year", name="uq_assistance_applications_person_kind_year"),
        Index(None, "case_id", "id"),
        # The overdue scan: open applications by deadline.
        Index(
            "ix_assistance_applications_due_open",
            "due_at",
            sqlite_where=text(_assistance_open),
            postgresql_where=text(_assistance_open),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"))
    person_id: Mapped[int] = mapped_column(ForeignKey("persons.id"))
    kind: Mapped[str] = mapped_column(String(30))
    year: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(20))
    version: Mapped[int] = mapped_column(Integer, default=1)
    # Who acts at each step, copied at raising from the person's place: plain equality when authorising.
    village_code: Mapped[str] = mapped_column(ForeignKey("org_units.code"))
    township_code: Mapped[str] = mapped_column(ForeignKey("org_units.code"))
    county_code: Mapped[str] = mapped_column(ForeignKey("org_units.code"))
    automatic: Mapped[bool] = mapped_column(Boolean, default=False)  # raised by the year position, not a person
    amount_requested: Mapped[Decimal | None] = mapped_column(Money)
    amount_approved: Mapped[Decimal | None] = mapped_column(Money)
    amount_paid: Mapped[Decimal | None] = mapped_column(Money)
    fund: Mapped[str | None] = mapped_column(String(30))
    raised_at: Mapped[datetime] = mapped_column(UTCDateTime)
    entered_state_at: Mapped[datetime] = mapped_column(UTCDateTime)
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class AssistanceEvent(Base):
    """Append-only history of an application: one row per accepted step, numbered from 1."""

    __tablename__ = "assistance_events"
    __table_args__ = (UniqueConstraint("application_id", "seq"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    application_id: Mapped[int] = mapped_column(ForeignKey("assistance_applications.id"))
    seq: Mapped[int] = mapped_column(Integer)
    event: Mapped[str] = mapped_column(String(30))
    from_state: Mapped[str | None] = mapped_column(String(20))
    to_state: Mapped[str] = mapped_column(String(20))
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    actor_username: Mapped[str] = mapped_column(String(80))
    org_unit_code: Mapped[str | None] = mapped_column(ForeignKey("org_units.code"))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    data: Mapped[dict[str, Any]] = mapped_column(JSONDocument, default=dict)
    reason: Mapped[str | None] = mapped_column(Text)
