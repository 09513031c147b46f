"""Reference data the state machine's guards ask about, answered from the database."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, exists, select
from sqlalchemy.orm import Session

from casework.models import CaseEvent, ExpertGroup, ExpertGroupPartner, Hospital, HospitalDesignation, OrgUnit
from workflows.case_machine import ExpertGroupRef, HospitalRef

# What a guard knows of a hospital or an expert group besides its code: HospitalRef's fields, in
# order (ExpertGroupRef's are the same), read by the queries below and by the lock of ``fire``.
UNIT_FIELDS = tuple(field.name for field in fields(HospitalRef) if field.name != "code")

_HOSPITAL = select(Hospital.code, *(Hospital.__table__.c[name] for name in UNIT_FIELDS)).where(
    Hospital.code == bindparam("code")
)
_GROUP = select(ExpertGroup.code, *(ExpertGroup.__table__.c[name] for name in UNIT_FIELDS)).where(
    ExpertGroup.code == bindparam("code")
)


class DatabaseReferences:
    """Plain rows read in Core on the session's connection: the guards run inside a transition's
    transaction, and need three columns, not an ORM object in the identity map.

    ``known`` holds hospitals and expert groups already read in this transaction (``None``: no such
    unit), keyed by ("hospital" or "expert_group", code): those are answered without a query."""

    def __init__(self, session: Session, known: Mapping[tuple[str, str], Any] | None = None) -> None:
        self.session = session
        self.known = dict(known or {})

    def hospital(self, code: str) -> HospitalRef | None:
        if ("hospital", code) in self.known:
            return self.known["hospital", code]
        row = self.session.connection().execute(_HOSPITAL, {"code": code}).first()
        return HospitalRef(*row) if row else None

    def expert_group(self, code: str) -> ExpertGroupRef | None:
        if ("expert_group", code) in self.known:
            return self.known["expert_group", code]
        row = self.session.connection().execute(_GROUP, {"code": code}).first()
        return ExpertGroupRef(*row) if row else None

    def is_designated(self, hospital_code: str, policy_code: str, disease_code: str) -> bool:
        return bool(
            self.session.scalar(
                select(
                    exists().where(
                        HospitalDesignation.hospital_code == hospital_code,
                        HospitalDesignation.policy_code == policy_code,
                        HospitalDesignation.disease_code == disease_code,
                    )
                )
            )
        )

    def is_partner(self, group_code: str, hospital_code: str) -> bool:
        return self.session.get(ExpertGroupPartner, (group_code, hospital_code)) is not None

    def admitted_at(self, case: Any) -> datetime | None:
        return self.session.scalar(
            select(CaseEvent.occurred_at)
            .where(CaseEvent.case_id == case.id, CaseEvent.event == "admit")
            .order_by(CaseEvent.seq.desc())
            .limit(1)
        )


def region_chain(session: Session, code: str) -> list[OrgUnit]:
    """The org unit and its ancestors, nearest first."""
    chain: list[OrgUnit] = []
    unit = session.get(OrgUnit, code)
    while unit is not None:
        chain.append(unit)
        unit = unit.parent
    return chain
