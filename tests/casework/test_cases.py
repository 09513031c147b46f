"""Screening and firing events through the service, on both engines."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlalchemy import func, select

from casework.errors import Conflict, Forbidden, NotFound, ValidationFailed, VersionMismatch
from casework.models import AccessLog, Case, CaseEvent, CaseHolder, Hospital, HospitalDesignation
from casework.services.cases import case_events, fire, get_case, read_case, replay, screen
from tests.casework.helpers import OESOPHAGEAL, Walker, designated_hospital, expert_group, partner_of
from tests.conftest import DEHONG, LONGCHUAN, actor_for_unit, at, new_person

NOW = at(2018, 6, 1, 9)


@pytest.fixture
def walk(session) -> Walker:
    return Walker(session, NOW)


def test_screening_opens_a_case_under_the_policy_in_force(session, walk):
    case = walk.new_case()
    assert (case.state, case.version, case.policy_code, case.county_code) == (
        "screened",
        1,
        "longchuan-2017",
        LONGCHUAN,
    )
    assert case.due_at == case.screened_at + timedelta(days=15)
    [event] = case_events(session, walk.coordinator, case.id)
    assert (event.seq, event.event, event.from_state, event.to_state) == (1, "screen", None, "screened")


def test_screening_refusals(session, walk):
    person = new_person(session)
    base = dict(person_id=person.id, disease_code=OESOPHAGEAL, source="visit", now=NOW)
    with pytest.raises(ValidationFailed) as caught:
        screen(session, walk.coordinator, **{**base, "disease_code": "lung_cancer_x"}, screened_at=NOW)
    assert "disease_code" in caught.value.errors
    with pytest.raises(ValidationFailed) as caught:
        screen(session, walk.coordinator, **base, screened_at=NOW + timedelta(minutes=5))
    assert "screened_at" in caught.value.errors
    with pytest.raises(ValidationFailed) as caught:  # the pack was issued 2017-10-31
        screen(session, walk.coordinator, **base, screened_at=at(2016, 1, 1))
    assert "screened_at" in caught.value.errors
    screen(session, walk.coordinator, **base, screened_at=NOW)
    with pytest.raises(Conflict):
        screen(session, walk.coordinator, **base, screened_at=NOW)
    assert session.scalar(select(func.count()).select_from(Case)) == 1


def test_category_not_in_the_pack_is_refused(session, walk):
    person = new_person(session, category="marginal")  # 低保边缘: a 2021 category, not Longchuan 2017's
    with pytest.raises(ValidationFailed) as caught:
        screen(
            session,
            walk.coordinator,
            person_id=person.id,
            disease_code=OESOPHAGEAL,
            source="visit",
            screened_at=NOW,
            now=NOW,
        )
    assert "person_id" in caught.value.errors


def test_childhood_disease_refused_for_an_adult(session, walk):
    childhood = next(d for d in walk_pack().diseases.values() if d.age_max is not None)
    person = new_person(session, born=date(1990, 1, 1))
    with pytest.raises(ValidationFailed, match="up to"):
        screen(
            session,
            walk.coordinator,
            person_id=person.id,
            disease_code=childhood.code,
            source="visit",
            screened_at=NOW,
            now=NOW,
        )
    child = new_person(session, born=date(2012, 5, 1))
    case = screen(
        session,
        walk.coordinator,
        person_id=child.id,
        disease_code=childhood.code,
        source="visit",
        screened_at=NOW,
        now=NOW,
    )
    assert case["state"] == "screened"


def walk_pack():
    from tests.casework.helpers import PACK

    return PACK


def test_screening_outside_ones_area_looks_like_no_person(session, walk):
    person = new_person(session, county="320921", category="subsistence")  # Yancheng resident
    with pytest.raises(ValidationFailed, match="no such person"):
        screen(
            session,
            walk.coordinator,
            person_id=person.id,
            disease_code=OESOPHAGEAL,
            source="visit",
            screened_at=NOW,
            now=NOW,
        )


def test_roles_that_may_not_screen(session, walk):
    person = new_person(session)
    supervisor = actor_for_unit(session, "supervisor", "533100")
    with pytest.raises(Forbidden):
        screen(
            session, supervisor, person_id=person.id, disease_code=OESOPHAGEAL, source="visit", screened_at=NOW, now=NOW
        )


def test_full_lifecycle_with_referral_and_reopen(session, walk):
    case = walk.new_case()
    walk.confirm(case)
    assert case.due_at == at(2018, 5, 22, 9) + timedelta(days=7)  # from diagnosed_at, not from now
    walk.assign(case)
    walk.admit(case)
    walk.refer(case)
    assert (case.state, case.referral_group_code, case.referred_from) == ("referred", walk.city_group, "in_treatment")
    expert = walk.expert_actor(case)
    walk.fire(case, "escalate", {"expert_group_id": walk.province_group, "summary": "需省级专家会诊"}, expert)
    provincial = walk.expert_actor(case)
    walk.fire(case, "consult", {"opinion": "维持县级方案，调整化疗周期"}, provincial)
    assert (case.state, case.referral_group_code) == ("in_treatment", None)
    walk.discharge(case)
    walk.fire(case, "start_follow_up", {"interval_days": 30}, walk.hospital_actor(case))
    assert case.due_at == NOW + timedelta(days=30 + 7)
    walk.fire(case, "close", reason="随访满一年，病情稳定")
    walk.fire(case, "reopen", reason="复发")
    assert (case.state, case.version, case.hospital_code) == ("confirmed", 11, None)

    history = case_events(session, walk.coordinator, case.id)
    assert [e.event for e in history] == [
        "screen",
        "confirm",
        "assign",
        "admit",
        "refer",
        "escalate",
        "consult",
        "discharge",
        "start_follow_up",
        "close",
        "reopen",
    ] and [e.seq for e in history] == list(range(1, 12))
    assert history[6].org_unit_code == walk.province_group and history[6].data["opinion"].startswith("维持")
    assert history[9].reason == "随访满一年，病情稳定"
    rebuilt = replay(session, case.id)
    assert (rebuilt.state, rebuilt.version) == (case.state, case.version) == ("confirmed", 11)


def test_accept_referral_moves_the_case_to_the_partner_hospital(session, walk):
    case = walk.refer(walk.admit(walk.assign(walk.confirm(walk.new_case()))))
    partner = partner_of(session, walk.city_group)
    walk.fire(case, "accept_referral", {"hospital_id": partner, "plan": "转州医院手术"}, walk.expert_actor(case))
    assert (case.state, case.hospital_code) == ("assigned", partner)
    # The county hospital keeps seeing the case it held; the new hospital now acts on it.
    county = actor_for_unit(session, "hospital", walk.county_hospital)
    assert get_case(session, county, case.id).id == case.id
    with pytest.raises(Forbidden):
        walk.fire(case, "admit", {"admitted_at": NOW.isoformat()}, county)
    walk.admit(case)
    assert case.state == "in_treatment"


def test_decline_returns_the_case_with_the_reason(session, walk):
    case = walk.refer(walk.assign(walk.confirm(walk.new_case())))
    walk.fire(case, "decline_referral", {}, walk.expert_actor(case), reason="资料不全，请补充病理报告")
    assert case.state == "assigned"
    assert case_events(session, walk.coordinator, case.id)[-1].reason == "资料不全，请补充病理报告"


def test_stale_version_is_refused_and_changes_nothing(session, walk):
    case = walk.new_case()
    with pytest.raises(VersionMismatch) as caught:
        fire(session, case.id, "exclude", walk.coordinator, {}, expected_version=7, reason="x", now=NOW)
    assert caught.value.current == 1
    assert session.get(Case, case.id).state == "screened"


def test_illegal_event_lists_what_is_allowed(session, walk):
    case = walk.new_case()
    with pytest.raises(Conflict) as caught:
        walk.fire(case, "discharge", {"discharged_at": NOW.isoformat(), "outcome": "cured"})
    assert caught.value.allowed_events == ["confirm", "exclude", "withdraw", "record_death"]


def test_unknown_event_names_the_field(session, walk):
    case = walk.new_case()
    with pytest.raises(ValidationFailed) as caught:
        walk.fire(case, "teleport")
    assert "event" in caught.value.errors


def test_bad_data_names_each_field_and_writes_nothing(session, walk):
    case = walk.new_case()
    with pytest.raises(ValidationFailed) as caught:
        walk.fire(case, "confirm", {"diagnosis_code": "oesophagus", "diagnosed_at": "yesterday", "extra": 1})
    assert set(caught.value.errors) == {"data.diagnosis_code", "data.diagnosed_at", "data.diagnosed_by", "data.extra"}
    with pytest.raises(ValidationFailed) as caught:
        walk.fire(
            case,
            "confirm",
            {"diagnosis_code": "C16.2", "diagnosed_by": walk.county_hospital, "diagnosed_at": NOW.isoformat()},
        )
    assert "diagnosis_code" in caught.value.errors
    session.expire_all()
    assert (session.get(Case, case.id).version, session.get(Case, case.id).state) == (1, "screened")
    assert session.scalar(select(func.count()).select_from(CaseEvent).where(CaseEvent.case_id == case.id)) == 1


def test_reason_is_required_where_the_event_needs_one(session, walk):
    case = walk.new_case()
    with pytest.raises(ValidationFailed) as caught:
        walk.fire(case, "exclude")
    assert "reason" in caught.value.errors
    walk.fire(case, "exclude", {"reason": "复核非建档立卡户"})
    assert case.state == "excluded"


def test_wrong_role_is_forbidden_but_out_of_scope_is_not_found(session, walk):
    case = walk.new_case()
    hospital = actor_for_unit(session, "hospital", walk.county_hospital)
    with pytest.raises(NotFound):  # the hospital never held this case
        walk.fire(case, "exclude", actor=hospital, reason="x")
    other_county = actor_for_unit(session, "county_coordinator", "320921")
    with pytest.raises(NotFound):
        walk.fire(case, "exclude", actor=other_county, reason="x")
    doctor = actor_for_unit(session, "village_doctor", case.village_code)
    with pytest.raises(Forbidden):
        walk.fire(case, "exclude", actor=doctor, reason="x")


def test_assigned_hospital_and_groups_become_holders(session, walk):
    case = walk.refer(walk.assign(walk.confirm(walk.new_case())))
    holders = set(session.scalars(select(CaseHolder.org_unit_code).where(CaseHolder.case_id == case.id)))
    assert holders == {walk.county_hospital, walk.city_group}


def test_reopen_refused_while_another_open_case_exists(session, walk):
    case = walk.new_case()
    walk.fire(walk.discharge(walk.admit(walk.assign(walk.confirm(case)))), "close", reason="治愈")
    other = screen(
        session,
        walk.coordinator,
        person_id=case.person_id,
        disease_code=OESOPHAGEAL,
        source="visit",
        screened_at=NOW,
        now=NOW,
    )
    with pytest.raises(Conflict):
        walk.fire(case, "reopen", reason="复发")
    assert session.get(Case, case.id).state == "closed" and other["state"] == "screened"


def test_death_recorded_by_the_assigned_hospital_ends_the_case(session, walk):
    case = walk.admit(walk.assign(walk.confirm(walk.new_case())))
    walk.fire(case, "record_death", {"died_at": (NOW - timedelta(hours=3)).isoformat()}, walk.hospital_actor(case))
    assert (case.state, case.due_at) == ("deceased", None)
    with pytest.raises(Conflict) as caught:
        walk.fire(case, "reopen", reason="x")
    assert caught.value.allowed_events == []


def test_assign_to_an_undesignated_hospital_names_the_field(session, walk):
    case = walk.confirm(walk.new_case())
    undesignated = session.scalar(
        select(Hospital.code)
        .where(
            ~Hospital.code.in_(
                select(HospitalDesignation.hospital_code).where(
                    HospitalDesignation.disease_code == OESOPHAGEAL, HospitalDesignation.policy_code == "longchuan-2017"
                )
            )
        )
        .order_by(Hospital.code)
    )
    with pytest.raises(ValidationFailed) as caught:
        walk.fire(case, "assign", {"hospital_id": undesignated, "plan": "乡镇卫生院"})
    assert "hospital_id" in caught.value.errors
    assert session.get(Case, case.id).state == "confirmed"


def _reads(session, person_id: int) -> list[tuple[str, str]]:
    session.rollback()
    rows = session.scalars(select(AccessLog).where(AccessLog.person_id == person_id).order_by(AccessLog.id))
    return [(r.username, r.what) for r in rows]


def test_fire_answers_with_the_view_it_logged_in_its_own_transaction(session, walk):
    case = walk.new_case()  # the coordinator screened it and was shown the full ID: one read logged
    view = fire(session, case.id, "exclude", walk.coordinator, {}, expected_version=1, reason="不符合条件", now=NOW)
    assert (view["id"], view["state"], view["version"], view["overdue"]) == (case.id, "excluded", 2, False)
    assert view["allowed_events"] == [] and view["person"]["id_number"] == case.person.id_number
    assert view["person"]["id_number_masked"] is False
    assert _reads(session, case.person_id) == [(walk.coordinator.username, "case")] * 2


def test_fire_refused_logs_no_read(session, walk):
    case = walk.new_case()
    with pytest.raises(VersionMismatch):
        fire(session, case.id, "exclude", walk.coordinator, {}, expected_version=5, reason="x", now=NOW)
    assert _reads(session, case.person_id) == [(walk.coordinator.username, "case")]


def test_read_case_logs_a_full_read_and_masks_for_others(session, walk):
    case = walk.new_case()
    supervisor = actor_for_unit(session, "supervisor", "533100")
    masked = read_case(session, supervisor, case.id, now=NOW)
    assert masked["person"]["id_number_masked"] is True and "*" in masked["person"]["id_number"]
    full = read_case(session, walk.coordinator, case.id, now=NOW)
    assert full["person"]["id_number_masked"] is False
    assert full["allowed_events"] == ["confirm", "exclude", "withdraw", "record_death"]
    assert _reads(session, case.person_id) == [(walk.coordinator.username, "case")] * 2
    with pytest.raises(NotFound):
        read_case(session, actor_for_unit(session, "county_coordinator", "320921"), case.id, now=NOW)


def test_a_referral_accepted_shows_the_new_hospital(session, walk):
    """The lock loads the hospital with the case; the view must show the one the event moved to."""
    case = walk.refer(walk.admit(walk.assign(walk.confirm(walk.new_case()))))
    partner = partner_of(session, walk.city_group)
    view = fire(
        session,
        case.id,
        "accept_referral",
        walk.expert_actor(case),
        {"hospital_id": partner, "plan": "转州医院手术"},
        case.version,
        now=NOW,
    )
    assert view["hospital"]["code"] == partner and view["referral"] is None


def test_the_lock_knows_a_named_unit_as_the_references_read_it(session, walk):
    """``fire`` reads the hospital or expert group an event names with the locked case; the guards
    then get the same refs a query of their own would give, and None for a code that names nothing."""
    from casework.references import DatabaseReferences
    from casework.services.cases import _lock_for_event

    case = walk.new_case()
    hospital = designated_hospital(session, "county")
    group = expert_group(session, DEHONG)
    refs = DatabaseReferences(session)
    for data, kind, code in (
        ({"diagnosed_by": hospital}, "hospital", hospital),
        ({"hospital_id": "H999999-99"}, "hospital", "H999999-99"),
        ({"expert_group_id": group}, "expert_group", group),
    ):
        _, _, known = _lock_for_event(session.connection(), case.id, walk.coordinator, data)
        assert known == {(kind, code): getattr(refs, kind)(code)}
    assert known["expert_group", group] is not None
    session.rollback()
