"""Server-side SVG: horizontal bar charts for the statistics, and the state diagram of the machine."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from html import escape

from markupsafe import Markup

from workflows.case_machine import (
    MACHINE,
    OPEN_STATES,
    RETURN_TO_ORIGIN,
    RULES,
    SCREENED,
    STATE_LABELS,
    TERMINAL_STATES,
)


def bar_chart(title: str, rows: Sequence[tuple[str, float]], unit: str = "", percent: bool = False) -> Markup:
    """One bar per row, labelled, scaled to the largest value; accessible by its title."""
    width, label_w, bar_h, gap = 640, 170, 22, 8
    height = 30 + len(rows) * (bar_h + gap)
    peak = max((v for _, v in rows), default=0) or 1
    parts = [
        f'<svg class="chart" role="img" aria-label="{escape(title)}" viewBox="0 0 {width} {height}" '
        f'xmlns="http://www.w3.org/2000/svg" width="100%">',
        f'<text x="0" y="16" class="chart-title">{escape(title)}</text>',
    ]
    for i, (label, value) in enumerate(rows):
        y = 30 + i * (bar_h + gap)
        length = (width - label_w - 90) * (value / peak)
        shown = f"{value * 100:.1f}%" if percent else f"{value:g}{unit}"
        parts.append(f'<text x="{label_w - 8}" y="{y + 16}" text-anchor="end">{escape(label)}</text>')
        parts.append(f'<rect x="{label_w}" y="{y}" width="{length:.1f}" height="{bar_h}" class="bar"/>')
        parts.append(f'<text x="{label_w + length + 6:.1f}" y="{y + 16}">{escape(shown)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def transitions() -> list[tuple[str, str, str]]:
    """(source, destination, event) of every machine transition, once each."""
    seen: list[tuple[str, str, str]] = []
    for name, event in MACHINE.events.items():
        for source, moves in event.transitions.items():
            for move in moves:
                edge = (source, move.dest, name)
                if edge not in seen:
                    seen.append(edge)
    return seen


def _layers() -> dict[str, int]:
    """Each state's depth from screening along forward moves (a simple layered layout)."""
    depth = {SCREENED: 0}
    frontier = [SCREENED]
    while frontier:
        following = []
        for state in frontier:
            for source, dest, _ in transitions():
                if source == state and dest not in depth:
                    depth[dest] = depth[state] + 1
                    following.append(dest)
        frontier = following
    for state in OPEN_STATES + TERMINAL_STATES:
        depth.setdefault(state, 1)
    return depth


def state_diagram() -> Markup:
    """States in columns by depth, every transition an arrow labelled with its event."""
    depth = _layers()
    columns: dict[int, list[str]] = defaultdict(list)
    for state in OPEN_STATES + TERMINAL_STATES:
        columns[depth[state]].append(state)
    box_w, box_h, col_gap, row_gap = 130, 44, 90, 40
    pos: dict[str, tuple[float, float]] = {}
    for col, states in sorted(columns.items()):
        for row, state in enumerate(states):
            pos[state] = (20 + col * (box_w + col_gap), 40 + row * (box_h + row_gap))
    width = 40 + (max(columns) + 1) * (box_w + col_gap)
    height = 80 + max(len(s) for s in columns.values()) * (box_h + row_gap)
    parts = [
        f'<svg class="diagram" role="img" aria-label="案件状态图" viewBox="0 0 {width} {height}" '
        f'xmlns="http://www.w3.org/2000/svg" width="100%">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" class="arrowhead"/></marker></defs>',
    ]
    pairs: dict[tuple[str, str], list[str]] = defaultdict(list)
    for source, dest, event in transitions():
        pairs[(source, dest)].append(event)
    for (source, dest), events in pairs.items():
        sx, sy = pos[source]
        dx, dy = pos[dest]
        if source == dest:  # a move within the state (escalate): a loop above the box
            x, y = sx + box_w / 2, sy
            path = f"M {x - 20} {y} C {x - 30} {y - 35}, {x + 30} {y - 35}, {x + 20} {y}"
            lx, ly = x, y - 30
        else:
            forward = dx > sx
            x1 = sx + (box_w if forward else 0) if dx != sx else sx + box_w / 2
            x2 = dx + (0 if forward else box_w) if dx != sx else dx + box_w / 2
            y1, y2 = sy + box_h / 2, dy + box_h / 2
            bend = 0 if forward else 60
            path = f"M {x1} {y1} C {(x1 + x2) / 2} {y1 + bend}, {(x1 + x2) / 2} {y2 + bend}, {x2} {y2}"
            lx, ly = (x1 + x2) / 2, (y1 + y2) / 2 + bend * 0.75 - 4
        label = "、".join(RULES[e].label for e in events)
        parts.append(f'<path d="{path}" class="edge" marker-end="url(#arrow)"/>')
        parts.append(f'<text x="{lx:.0f}" y="{ly:.0f}" class="edge-label" text-anchor="middle">{escape(label)}</text>')
    for state, (x, y) in pos.items():
        kind = "terminal" if state in TERMINAL_STATES else "open"
        parts.append(
            f'<g class="state {kind}" data-state="{state}"><rect x="{x}" y="{y}" width="{box_w}" height="{box_h}" '
            f'rx="8"/><text x="{x + box_w / 2}" y="{y + 19}" text-anchor="middle">{escape(STATE_LABELS[state])}</text>'
            f'<text x="{x + box_w / 2}" y="{y + 35}" text-anchor="middle" class="code">{state}</text></g>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def transition_table() -> list[dict[str, str]]:
    """The rules as rows: event, label, from, to, who — the same table the machine is built from."""
    rows = []
    for rule in RULES.values():
        dest = "返回转诊前状态" if rule.dest == RETURN_TO_ORIGIN else STATE_LABELS[rule.dest]
        rows.append(
            {
                "event": rule.name,
                "label": rule.label,
                "sources": "、".join(STATE_LABELS[s] for s in rule.sources),
                "dest": dest,
                "roles": "、".join(ROLE_LABELS.get(r, r) for r in rule.roles),
            }
        )
    return rows


ROLE_LABELS = {
    "admin": "系统管理员",
    "supervisor": "监管人员",
    "county_coordinator": "县卫健局",
    "village_doctor": "乡村医生",
    "hospital": "定点医院",
    "expert": "专家组",
}
