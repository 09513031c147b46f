"""Random event sequences through the real service on both engines (hypothesis, stateful).

Whatever is fired, by whomever, with good or bad data: the stored case equals the replay of its
history, the version rises by exactly one per accepted event and never otherwise, and final
states refuse everything except ``reopen`` from ``closed``.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

from hypothesis import HealthCheck, settings
from hypothesis import event as note
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test
from sqlalchemy import func, select

from casework.errors import CaseworkError, Conflict
from casework.models import Case, CaseEvent
from casework.services.cases import fire, replay
from tests.casework.helpers import OESOPHAGEAL_ICD, Walker, partner_of
from tests.conftest import actor_for_unit, at
from workflows import case_machine as m

NOW = at(2018, 6, 1, 9)
EVENTS = list(m.RULES)
EXITS = ("exclude", "withdraw", "record_death")


def test_random_event_sequences_keep_the_invariants(session):
    walk = Walker(session, NOW)
    reached: Counter[str] = Counter()

    def actors_for(case):
        actors = [walk.coordinator]
        if case.hospital_code:
            actors.append(actor_for_unit(session, "hospital", case.hospital_code))
        if case.referral_group_code:
            actors.append(actor_for_unit(session, "expert", case.referral_group_code))
        actors.append(actor_for_unit(session, "village_doctor", case.village_code))
        return actors

    def good_data(event, case):
        earlier = (NOW - timedelta(days=1)).isoformat()
        return {
            "confirm": {
                "diagnosis_code": OESOPHAGEAL_ICD,
                "diagnosed_by": walk.county_hospital,
                "diagnosed_at": earlier,
            },
            "assign": {"hospital_id": walk.county_hospital, "plan": "临床路径"},
            "admit": {"admitted_at": earlier},
            "discharge": {"discharged_at": earlier, "outcome": "improved"},
            "start_follow_up": {"interval_days": 30},
            "refer": {"expert_group_id": walk.city_group, "summary": "s"},
            "escalate": {"expert_group_id": walk.province_group, "summary": "s"},
            "accept_referral": {
                "hospital_id": partner_of(session, case.referral_group_code or walk.city_group) or walk.county_hospital,
                "plan": "p",
            },
            "consult": {"opinion": "o"},
            "record_death": {"died_at": earlier},
        }.get(event, {})

    class CaseWorkflow(RuleBasedStateMachine):
        @initialize()
        def open_case(self):
            self.case = walk.new_case()
            self.version = 1

        @rule(
            pick=st.integers(0, 10**6),
            mode=st.integers(0, 9),
            who=st.integers(0, 9),
            corrupt=st.integers(0, 9),
            give_reason=st.booleans(),
        )
        def fire_event(self, pick, mode, who, corrupt, give_reason):
            session.expire_all()
            case = session.get(Case, self.case.id)
            before = (case.state, case.version)
            # Mostly what the machine allows and not an exit, so walks reach treatment, referral and
            # closure; sometimes any event at all, which must be refused cleanly.
            allowed = m.allowed_events(case)
            onward = [e for e in allowed if e not in EXITS]
            if mode < 7 and onward:
                event = onward[pick % len(onward)]
            elif mode < 8 and allowed:
                event = allowed[pick % len(allowed)]
            else:
                event = EVENTS[pick % len(EVENTS)]
            candidates = actors_for(case)
            entitled = [a for a in candidates if m.actor_may(m.RULES[event], case, a)]
            actor = entitled[0] if entitled and who < 8 else candidates[who % len(candidates)]
            data = good_data(event, case)
            if corrupt < 2 and data:
                data = {**data, next(iter(data)): "¿"}
            try:
                fire(
                    session, case.id, event, actor, data, case.version, reason="原因" if give_reason else None, now=NOW
                )
                accepted = True
            except CaseworkError as exc:
                accepted = False
                if before[0] in m.TERMINAL_STATES and not (before[0] == "closed" and event == "reopen"):
                    assert isinstance(exc, Conflict)
                    assert set(exc.allowed_events) <= ({"reopen"} if before[0] == "closed" else set())
            session.expire_all()
            after = session.get(Case, self.case.id)
            note(f"reached {after.state}" if accepted else f"refused in {before[0]}")
            if accepted:
                reached[after.state] += 1
            if accepted:
                assert before[0] not in m.TERMINAL_STATES or (before[0], event) == ("closed", "reopen")
                assert after.version == before[1] + 1
                self.version += 1
            else:
                assert (after.state, after.version) == before

        @invariant()
        def stored_equals_replay(self):
            if not hasattr(self, "case"):
                return
            session.expire_all()
            stored = session.get(Case, self.case.id)
            rebuilt = replay(session, stored.id)
            assert (
                rebuilt.state,
                rebuilt.version,
                rebuilt.hospital_code,
                rebuilt.referral_group_code,
                rebuilt.referred_from,
            ) == (stored.state, stored.version, stored.hospital_code, stored.referral_group_code, stored.referred_from)
            count = session.scalar(select(func.count()).select_from(CaseEvent).where(CaseEvent.case_id == stored.id))
            assert stored.version == self.version == count

    run_state_machine_as_test(
        CaseWorkflow,
        settings=settings(
            max_examples=20,
            stateful_step_count=25,
            deadline=None,
            derandomize=True,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        ),
    )
    # The walks must explore the workflow, not idle at its start.
    assert {"in_treatment", "treated", "follow_up", "referred", "closed"} <= set(reached), reached
