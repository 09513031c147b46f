"""The assistance review chain on its own: every step from every state, who may take it, what it carries."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import pytest
from transitions import MachineError

from workflows import assistance_machine as m

# Seed 004 二(四): "经村（居）、镇（园区、街道）审核确认，由市慈善基金会、红十字会视情予以救助", written out by hand.
EXPECTED = {
    "village_approve": {"raised": "village_reviewed"},
    "village_reject": {"raised": "refused"},
    "town_approve": {"village_reviewed": "town_reviewed"},
    "town_reject": {"village_reviewed": "refused"},
    "approve": {"town_reviewed": "approved"},
    "refuse": {"town_reviewed": "refused"},
    "pay": {"approved": "paid"},
}


@dataclass
class App:
    state: str
    village_code: str = "320681100201"
    township_code: str = "320681100"
    county_code: str = "320681"
    amount_approved: Decimal | None = None


@dataclass
class Who:
    role: str
    org_unit_code: str


def test_rules_are_the_seed_chain():
    assert {name: {s: r.dest for s in r.sources} for name, r in m.RULES.items()} == EXPECTED


@pytest.mark.parametrize("event", list(EXPECTED))
@pytest.mark.parametrize("state", m.OPEN_STATES + m.TERMINAL_STATES)
def test_every_step_from_every_state(event, state):
    app = App(state, amount_approved=Decimal("100.00"))
    data = {"amount_paid": Decimal("100.00")}
    if state in EXPECTED[event]:
        assert m.trigger(app, event, data) == state and app.state == EXPECTED[event][state]
    else:
        assert not m.can_happen(event, app)
        with pytest.raises(MachineError):
            m.trigger(app, event, data)
        assert app.state == state


@pytest.mark.parametrize(
    ("state", "who", "allowed"),
    [
        ("raised", Who("village_doctor", "320681100201"), ["village_approve", "village_reject"]),
        ("raised", Who("village_doctor", "320681100"), []),  # the township waits for the village
        ("raised", Who("village_doctor", "320681100202"), []),  # another village's doctor
        ("village_reviewed", Who("village_doctor", "320681100"), ["town_approve", "town_reject"]),
        ("village_reviewed", Who("county_coordinator", "320681"), []),
        ("town_reviewed", Who("county_coordinator", "320681"), ["approve", "refuse"]),
        ("town_reviewed", Who("county_coordinator", "320921"), []),  # another county
        ("approved", Who("county_coordinator", "320681"), ["pay"]),
        ("paid", Who("county_coordinator", "320681"), []),
    ],
)
def test_who_may_act_is_a_role_of_the_steps_org_unit(state, who, allowed):
    assert m.allowed_events(App(state), who) == allowed


def test_payment_cannot_exceed_the_approved_amount():
    app = App("approved", amount_approved=Decimal("1800.00"))
    with pytest.raises(m.GuardFailed) as caught:
        m.trigger(app, "pay", {"amount_paid": Decimal("1800.01")})
    assert caught.value.field == "amount_paid" and app.state == "approved"


def test_every_open_step_has_an_overdue_rule_and_someone_to_tell():
    assert set(m.OVERDUE_RULES) == set(m.ACTING_UNIT) == set(m.OPEN_STATES)
