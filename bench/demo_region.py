"""The demo region as the seeders need it: counties with a policy in force, their villages,
catalogue, designated hospitals and expert group."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from bench.databases import BenchDatabase, query


@dataclass
class County:
    code: str
    city: str
    province: str
    policy: str
    villages: list[str]
    township_of: dict[str, str]  # village -> the township it hangs under
    diseases: list[str]
    hospitals: list[str]  # designated for the case's disease: (county hospital, municipal hospital)
    group: str  # the municipal expert group of the city
    designations: set[tuple[str, str]] = field(default_factory=set)  # (hospital, disease)


def counties(db: BenchDatabase, on: date) -> list[County]:
    """Every demo county with a policy in force, its villages, catalogue, hospitals and group."""
    from workflows.policy_pack import pack_for

    rows = query(db, "SELECT code, kind, parent_code FROM org_units")
    parent = {code: p for code, _, p in rows}
    kind = {code: k for code, k, _ in rows}
    designations = query(db, "SELECT hospital_code, policy_code, disease_code FROM hospital_designations")
    hospital_level = dict(query(db, "SELECT code, level FROM hospitals"))
    groups = dict(query(db, "SELECT region_code, code FROM expert_groups WHERE level = 'municipal'"))
    out = []
    for code in sorted(c for c, k in kind.items() if k == "county"):
        city = parent[code]
        province = parent[city]
        pack = pack_for([code, city, province], on)
        if pack is None or city not in groups:
            continue
        villages = sorted(c for c, k in kind.items() if k == "village" and parent[parent[c]] == code)
        designated = {(h, d) for h, p, d in designations if p == pack.code}
        # Diseases a county or municipal hospital of the case's own region treats.
        mine = {
            h for h, _ in designated if hospital_level[h] in ("county", "municipal") and parent.get(h) in (code, city)
        }
        diseases = sorted(d for d in pack.diseases if any((h, d) in designated for h in mine))
        out.append(
            County(
                code,
                city,
                province,
                pack.code,
                villages,
                {village: parent[village] for village in villages},
                diseases,
                sorted(mine, key=lambda h: hospital_level[h] != "county"),
                groups[city],
                designated,
            )
        )
    assert out, "the demo region has no county with a policy in force"
    return out
