"""The demo region: org units, hospitals and expert groups of every seed region, and a login per role.

Running it twice changes nothing: rows are matched by code and written only when missing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import select
from sqlalchemy.orm import Session

import workflows
from casework.actor import Actor
from casework.db import write_transaction
from casework.models import ExpertGroup, ExpertGroupPartner, Hospital, HospitalDesignation, OrgUnit, User
from casework.scope import in_subtree
from casework.services.users import create_user
from workflows.policy_pack import packs

DEMO_FILE = Path(workflows.__file__).resolve().parent / "demo" / "region.yaml"
DEMO_PASSWORD = "casework-demo"


@dataclass
class DemoSummary:
    created: dict[str, int]
    logins: list[tuple[str, str, str]]  # username, role, org unit name


def load_demo(
    session: Session, path: Path = DEMO_FILE, password: str = DEMO_PASSWORD, with_cases: bool = False
) -> DemoSummary:
    """The demo region and its logins; ``with_cases`` adds the living demo cases (demo_cases.py)."""
    data: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    created = {"org_units": 0, "hospitals": 0, "designations": 0, "expert_groups": 0, "users": 0}
    catalogue = packs()
    with write_transaction(session):
        for row in data["org_units"]:
            created["org_units"] += _add_missing(
                session,
                OrgUnit(
                    code=str(row["code"]),
                    name=row["name"],
                    kind=row["level"],
                    parent_code=str(row["parent"]) if row["parent"] else None,
                ),
            )
        for row in data["hospitals"]:
            code = str(row["code"])
            created["org_units"] += _add_missing(
                session, OrgUnit(code=code, name=row["name"], kind="hospital", parent_code=str(row["org_unit"]))
            )
            created["hospitals"] += _add_missing(
                session,
                Hospital(code=code, level=row["level"], grade=row.get("grade"), region_code=str(row["org_unit"])),
            )
            for policy_code, diseases in (row.get("designations") or {}).items():
                wanted = catalogue[policy_code].diseases if diseases == "*" else diseases
                for disease in wanted:
                    created["designations"] += _add_missing(
                        session, HospitalDesignation(hospital_code=code, policy_code=policy_code, disease_code=disease)
                    )
        for row in data["expert_groups"]:
            code = str(row["code"])
            created["org_units"] += _add_missing(
                session, OrgUnit(code=code, name=row["name"], kind="expert_group", parent_code=str(row["region"]))
            )
            created["expert_groups"] += _add_missing(
                session, ExpertGroup(code=code, level=row["level"], region_code=str(row["region"]))
            )
            for hospital in row.get("partner_hospitals", []):
                _add_missing(session, ExpertGroupPartner(group_code=code, hospital_code=str(hospital)))

    logins = []
    for username, role, org_unit in _demo_logins(session, data):
        if session.scalar(select(User.id).where(User.username == username)) is None:
            create_user(session, Actor.system(), username=username, password=password, role=role, org_unit=org_unit)
            created["users"] += 1
        unit = session.get(OrgUnit, org_unit) if org_unit else None
        logins.append((username, role, unit.name if unit else "-"))
    session.commit()
    if with_cases:
        from casework.services.demo_cases import load_demo_cases

        created["cases"] = load_demo_cases(session)
    return DemoSummary(created, logins)


def _add_missing(session: Session, row: Any) -> int:
    mapper = row.__mapper__
    key = tuple(getattr(row, column.key) for column in mapper.primary_key)
    if session.get(type(row), key if len(key) > 1 else key[0]) is not None:
        return 0
    session.add(row)
    session.flush()
    return 1


def _demo_logins(session: Session, data: dict[str, Any]) -> list[tuple[str, str, str | None]]:
    """One login per role for each seed region's first county, its hospitals and groups."""
    logins: list[tuple[str, str, str | None]] = []
    for pack in packs().values():
        slug = pack.code.split("-")[0]
        county = _first_county(session, pack.region_code)
        if county is None:
            continue
        township = session.scalar(
            select(OrgUnit.code).where(OrgUnit.parent_code == county, OrgUnit.kind == "township").order_by(OrgUnit.code)
        )
        hospitals = [h for h in data["hospitals"] if pack.code in (h.get("designations") or {})]
        county_hospital = next((h for h in hospitals if h["level"] == "county"), None)
        municipal_group = next(
            (
                g
                for g in data["expert_groups"]
                if g["level"] == "municipal" and in_subtree(session, county, str(g["region"]))
            ),
            None,
        )
        logins.append((f"{slug}.coordinator", "county_coordinator", county))
        logins.append((f"{slug}.supervisor", "supervisor", pack.region_code))
        if township:
            logins.append((f"{slug}.doctor", "village_doctor", township))
            # The village of the assistance review chain (村（居）审核); the township doctor is its town review.
            village = session.scalar(
                select(OrgUnit.code)
                .where(OrgUnit.parent_code == township, OrgUnit.kind == "village")
                .order_by(OrgUnit.code)
            )
            if village:
                logins.append((f"{slug}.village", "village_doctor", village))
        if county_hospital:
            logins.append((f"{slug}.hospital", "hospital", str(county_hospital["code"])))
        if municipal_group:
            logins.append((f"{slug}.expert", "expert", str(municipal_group["code"])))
    return logins


def _first_county(session: Session, region_code: str) -> str | None:
    unit = session.get(OrgUnit, region_code)
    if unit is None or unit.kind == "county":
        return unit.code if unit else None
    return session.scalar(
        select(OrgUnit.code).where(OrgUnit.parent_code == region_code, OrgUnit.kind == "county").order_by(OrgUnit.code)
    )
