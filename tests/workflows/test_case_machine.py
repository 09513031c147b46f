"""The state machine on its own: every event from every state, every role relation, every guard."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from transitions import MachineError

from workflows import case_machine as m
from workflows.case_machine import ExpertGroupRef, GuardFailed, HospitalRef
from workflows.policy_pack import packs

NOW = datetime(2018, 6, 1, 9, 0, tzinfo=UTC)
PACK = packs()["longchuan-2017"]
OESOPHAGEAL = next(d.code for d in PACK.diseases.values() if d.name_zh == "食管癌")

# Where each event goes from each state it may fire in (the table in docs/api.md, written out by hand).
EXPECTED = {
    "confirm": {"screened": "confirmed"},
    "exclude": {"screened": "excluded", "confirmed": "excluded"},
    "assign": {"confirmed": "assigned"},
    "admit": {"assigned": "in_treatment"},
    "discharge": {"in_treatment": "treated"},
    "start_follow_up": {"treated": "follow_up"},
    "close": {"treated": "closed", "follow_up": "closed"},
    "refer": {"assigned": "referred", "in_treatment": "referred", "follow_up": "referred"},
    "escalate": {"referred": "referred"},
    "accept_referral": {"referred": "assigned"},
    "consult": {"referred": "<origin>"},
    "decline_referral": {"referred": "<origin>"},
    "withdraw": {s: "withdrawn" for s in m.OPEN_STATES},
    "record_death": {s: "deceased" for s in m.OPEN_STATES},
    "reopen": {"closed": "confirmed"},
}
ALL_STATES = m.OPEN_STATES + m.TERMINAL_STATES


@dataclass
class FakeCase:
    state: str
    disease_code: str = OESOPHAGEAL
    policy_code: str = "longchuan-2017"
    hospital_code: str | None = "H-county"
    referral_group_code: str | None = None
    referred_from: str | None = None
    county_code: str = "533124"
    city_code: str = "533100"
    province_code: str = "530000"
    screened_at: datetime = NOW - timedelta(days=30)


@dataclass
class FakeActor:
    role: str
    org_unit_code: str


@dataclass
class FakeRefs:
    hospitals: dict[str, HospitalRef] = field(
        default_factory=lambda: {
            "H-township": HospitalRef("H-township", "township", "533124100"),
            "H-county": HospitalRef("H-county", "county", "533124"),
            "H-city": HospitalRef("H-city", "municipal", "533100"),
            "H-partner": HospitalRef("H-partner", "county", "533100"),
            "H-province": HospitalRef("H-province", "provincial", "530000"),
        }
    )
    groups: dict[str, ExpertGroupRef] = field(
        default_factory=lambda: {
            "EG-city": ExpertGroupRef("EG-city", "municipal", "533100"),
            "EG-other-city": ExpertGroupRef("EG-other-city", "municipal", "533300"),
            "EG-province": ExpertGroupRef("EG-province", "provincial", "530000"),
        }
    )
    designated: set[str] = field(default_factory=lambda: {"H-county", "H-city", "H-province"})
    partners: set[tuple[str, str]] = field(default_factory=lambda: {("EG-city", "H-partner")})

    def hospital(self, code):
        return self.hospitals.get(code)

    def expert_group(self, code):
        return self.groups.get(code)

    def is_designated(self, hospital_code, policy_code, disease_code):
        return hospital_code in self.designated and policy_code == PACK.code

    def is_partner(self, group_code, hospital_code):
        return (group_code, hospital_code) in self.partners

    def admitted_at(self, case):
        return getattr(case, "admitted_at", None)


def ctx(case, data, actor=None):
    return m.EventContext(case, actor or FakeActor("county_coordinator", "533124"), data, PACK, FakeRefs(), NOW)


def test_rules_match_the_contract_table():
    for event, moves in EXPECTED.items():
        assert set(m.RULES[event].sources) == set(moves), event
    assert set(m.RULES) == set(EXPECTED)


@pytest.mark.parametrize("state", ALL_STATES)
@pytest.mark.parametrize("event", list(EXPECTED))
def test_every_event_from_every_state(event, state):
    case = FakeCase(state, referred_from="in_treatment" if state == "referred" else None)
    expected = EXPECTED[event].get(state)
    assert m.can_happen(event, case) is (expected is not None)
    if expected is None:
        with pytest.raises(MachineError):
            m.trigger(case, event, {})
        assert case.state == state
        return
    m.trigger(case, event, _data_for(event))  # no ctx: routing and effects only
    assert case.state == ("in_treatment" if expected == "<origin>" else expected)


def _data_for(event):
    return {
        "assign": {"hospital_id": "H-city"},
        "accept_referral": {"hospital_id": "H-city"},
        "refer": {"expert_group_id": "EG-city"},
        "escalate": {"expert_group_id": "EG-province"},
    }.get(event, {})


@pytest.mark.parametrize("origin", m.REFERRAL_ORIGINS)
@pytest.mark.parametrize("answer", ["consult", "decline_referral"])
def test_referral_answer_returns_to_origin_and_clears_referral(origin, answer):
    case = FakeCase(origin)
    m.trigger(case, "refer", {"expert_group_id": "EG-city"})
    assert (case.state, case.referred_from, case.referral_group_code) == ("referred", origin, "EG-city")
    m.trigger(case, answer, {})
    assert (case.state, case.referred_from, case.referral_group_code) == (origin, None, None)


@pytest.mark.parametrize("answer", ["consult", "decline_referral"])
def test_a_referral_answer_without_an_origin_is_no_transition(answer):
    """A referred case whose origin was never recorded (a broken history) has nowhere to return:
    the machine says there is no such transition, as for any event the state does not allow, not
    that a field of the data was wrong."""
    case = FakeCase("referred", referred_from=None)
    assert not m.can_happen(answer, case)
    with pytest.raises(MachineError):
        m.trigger(case, answer, {})
    assert case.state == "referred"


def test_terminal_states_refuse_everything_but_reopen_from_closed():
    for state in m.TERMINAL_STATES:
        allowed = m.allowed_events(FakeCase(state))
        assert allowed == (["reopen"] if state == "closed" else [])


# --- who may fire ------------------------------------------------------------------------------

ROLE_CASES = [
    # event, state, actor, allowed
    ("confirm", "screened", FakeActor("county_coordinator", "533124"), True),
    ("confirm", "screened", FakeActor("hospital", "H-county"), False),
    ("confirm", "screened", FakeActor("village_doctor", "533124100"), False),
    ("assign", "confirmed", FakeActor("supervisor", "533100"), False),
    ("admit", "assigned", FakeActor("hospital", "H-county"), True),
    ("admit", "assigned", FakeActor("hospital", "H-city"), False),  # not the assigned hospital
    ("admit", "assigned", FakeActor("county_coordinator", "533124"), False),
    ("discharge", "in_treatment", FakeActor("hospital", "H-county"), True),
    ("start_follow_up", "treated", FakeActor("county_coordinator", "533124"), True),
    ("start_follow_up", "treated", FakeActor("hospital", "H-county"), True),
    ("refer", "in_treatment", FakeActor("hospital", "H-county"), True),
    ("refer", "in_treatment", FakeActor("expert", "EG-city"), False),
    ("record_death", "in_treatment", FakeActor("hospital", "H-county"), True),
    ("record_death", "in_treatment", FakeActor("hospital", "H-other"), False),
    ("withdraw", "assigned", FakeActor("hospital", "H-county"), False),
    ("close", "follow_up", FakeActor("admin", ""), False),
]


@pytest.mark.parametrize(("event", "state", "actor", "allowed"), ROLE_CASES)
def test_who_may_fire(event, state, actor, allowed):
    case = FakeCase(state)
    assert m.actor_may(m.RULES[event], case, actor) is allowed
    assert (event in m.allowed_events(case, actor)) is allowed


@pytest.mark.parametrize("event", ["escalate", "accept_referral", "consult", "decline_referral"])
def test_only_the_holding_expert_group_answers_a_referral(event):
    case = FakeCase("referred", referral_group_code="EG-city", referred_from="assigned")
    assert m.actor_may(m.RULES[event], case, FakeActor("expert", "EG-city"))
    assert not m.actor_may(m.RULES[event], case, FakeActor("expert", "EG-province"))
    assert not m.actor_may(m.RULES[event], case, FakeActor("county_coordinator", "533124"))


# --- guards ------------------------------------------------------------------------------------


def run(event, case, data, actor=None):
    m.trigger(case, event, data, ctx(case, data, actor))
    return case


def _confirm_data(**over):
    data = {"diagnosis_code": "C15.9", "diagnosed_by": "H-county", "diagnosed_at": NOW - timedelta(days=2)}
    return {**data, **over}


def test_confirm_accepts_a_matching_icd10_code():
    assert run("confirm", FakeCase("screened"), _confirm_data()).state == "confirmed"


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"diagnosis_code": "C16.0"}, "diagnosis_code"),  # gastric, not oesophageal
        ({"diagnosed_by": "H-nowhere"}, "diagnosed_by"),
        ({"diagnosed_at": NOW + timedelta(hours=1)}, "diagnosed_at"),
        ({"diagnosed_at": NOW - timedelta(days=60)}, "diagnosed_at"),  # before screening
    ],
)
def test_confirm_guards(over, field):
    case = FakeCase("screened")
    with pytest.raises(GuardFailed) as caught:
        run("confirm", case, _confirm_data(**over))
    assert caught.value.field == field
    assert case.state == "screened"


def test_assign_needs_a_designated_hospital():
    case = FakeCase("confirmed", hospital_code=None)
    with pytest.raises(GuardFailed, match="not designated"):
        run("assign", case, {"hospital_id": "H-township", "plan": "p"})
    with pytest.raises(GuardFailed, match="no such hospital"):
        run("assign", case, {"hospital_id": "H-x", "plan": "p"})
    assert run("assign", case, {"hospital_id": "H-county", "plan": "p"}).hospital_code == "H-county"


@pytest.mark.parametrize(
    ("group", "ok"),
    [("EG-city", True), ("EG-province", False), ("EG-other-city", False), ("EG-none", False)],
)
def test_refer_goes_exactly_one_level_up(group, ok):
    case = FakeCase("in_treatment")
    if ok:
        assert run("refer", case, {"expert_group_id": group, "summary": "s"}).referral_group_code == group
    else:
        with pytest.raises(GuardFailed) as caught:
            run("refer", case, {"expert_group_id": group, "summary": "s"})
        assert caught.value.field == "expert_group_id"


def test_escalate_from_municipal_to_provincial_and_no_further():
    case = FakeCase("referred", referral_group_code="EG-city", referred_from="in_treatment")
    expert = FakeActor("expert", "EG-city")
    with pytest.raises(GuardFailed):
        run("escalate", case, {"expert_group_id": "EG-city", "summary": "s"}, expert)
    run("escalate", case, {"expert_group_id": "EG-province", "summary": "s"}, expert)
    assert (case.state, case.referral_group_code, case.referred_from) == ("referred", "EG-province", "in_treatment")
    with pytest.raises(GuardFailed, match="top of the referral ladder"):
        run("escalate", case, {"expert_group_id": "EG-province", "summary": "s"}, FakeActor("expert", "EG-province"))


@pytest.mark.parametrize(
    ("hospital", "ok"),
    [("H-partner", True), ("H-city", True), ("H-province", True), ("H-county", False), ("H-township", False)],
)
def test_accept_referral_needs_a_partner_or_higher_designated_hospital(hospital, ok):
    case = FakeCase("referred", referral_group_code="EG-city", referred_from="in_treatment")
    data = {"hospital_id": hospital, "plan": "p"}
    if ok:
        run("accept_referral", case, data)
        assert (case.state, case.hospital_code, case.referral_group_code) == ("assigned", hospital, None)
    else:
        with pytest.raises(GuardFailed):
            run("accept_referral", case, data)


def test_mermaid_diagram_has_every_event():
    diagram = m.mermaid()
    assert diagram.startswith("stateDiagram-v2")
    for event in m.RULES:
        assert f": {event} (" in diagram
    assert "referred --> in_treatment: consult" in diagram


def test_states_are_declared_once_and_everything_derives_from_them():
    """Open/terminal lists, labels, overdue rules and what a pack must name all come from STATES;
    each state's deadline is a key every pack carries (or one of the disease's own clocks)."""
    from workflows import deadlines, policy_pack

    assert m.STATE_NAMES == m.OPEN_STATES + m.TERMINAL_STATES
    assert set(m.STATE_LABELS) == set(m.STATE_NAMES) == set(m.MACHINE.states)
    assert deadlines.OVERDUE_RULES is m.OVERDUE_RULES
    assert set(policy_pack.OVERDUE_STATES) == {s.name for s in m.STATES if s.overdue_rule}
    for state in m.STATES:
        assert (state.deadline is None) == state.terminal == (state.overdue_rule is None), state.name
        if state.deadline not in (None, m.EXPECTED_STAY, m.FOLLOW_UP_INTERVAL):
            assert state.deadline in policy_pack.DEADLINE_KEYS, state.name
    for pack in policy_pack.packs().values():
        assert set(pack.overdue_alerts) == set(policy_pack.OVERDUE_STATES), pack.code
