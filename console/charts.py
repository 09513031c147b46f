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


ANY_OPEN = tuple(OPEN_STATES)


def _layers() -> dict[str, int]:
    """Each state's depth from screening along forward moves, leaving out the events that can
    happen from any open state (withdraw, death): they get a row of their own below."""
    depth = {SCREENED: 0}
    frontier = [SCREENED]
    edges = [(s, d) for s, d, e in transitions() if RULES[e].sources != ANY_OPEN]
    while frontier:
        following = []
        for state in frontier:
            for source, dest in edges:
                if source == state and dest not in depth:
                    depth[dest] = depth[state] + 1
                    following.append(dest)
        frontier = following
    return depth


def state_diagram() -> Markup:
    """States in columns by depth (a simple layered layout), every transition an arrow labelled
    with its event; the events open to every open state are drawn once, from a bracket."""
    depth = _layers()
    everywhere = [rule for rule in RULES.values() if rule.sources == ANY_OPEN]
    columns: dict[int, list[str]] = defaultdict(list)
    for state in OPEN_STATES + TERMINAL_STATES:
        if state in depth:
            columns[depth[state]].append(state)
    box_w, box_h, col_gap, row_gap = 120, 44, 70, 70
    pos: dict[str, tuple[float, float]] = {}
    for col, states in sorted(columns.items()):
        for row, state in enumerate(states):
            pos[state] = (20 + col * (box_w + col_gap), 50 + row * (box_h + row_gap))
    rows = max(len(s) for s in columns.values())
    bracket_y = 50 + rows * (box_h + row_gap) - row_gap / 2 + 10
    for i, rule in enumerate(everywhere):
        pos[rule.dest] = (20 + (1 + 2 * i) * (box_w + col_gap), bracket_y + 60)
    width = 40 + (max(columns) + 1) * (box_w + col_gap)
    height = bracket_y + 60 + box_h + 20
    parts = [
        f'<svg class="diagram" role="img" aria-label="案件状态图" viewBox="0 0 {width:.0f} {height:.0f}" '
        f'xmlns="http://www.w3.org/2000/svg" width="100%">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" class="arrowhead"/></marker></defs>',
    ]
    pairs: dict[tuple[str, str], list[str]] = defaultdict(list)
    for source, dest, event in transitions():
        if RULES[event].sources != ANY_OPEN:
            pairs[(source, dest)].append(event)
    for (source, dest), events in pairs.items():
        label = "、".join(RULES[e].label for e in events)
        parts.append(_edge(pos[source], pos[dest], box_w, box_h, label, source == dest))
    # One bracket under the open states; from it, one arrow per event open to all of them.
    open_x = [pos[s][0] for s in OPEN_STATES]
    parts.append(
        f'<path d="M {min(open_x)} {bracket_y} H {max(open_x) + box_w}" class="edge bracket"/>'
        f'<text x="{min(open_x)}" y="{bracket_y - 6}" class="edge-label">任一进行中的状态</text>'
    )
    for rule in everywhere:
        x, y = pos[rule.dest]
        mid = x + box_w / 2
        parts.append(
            f'<path d="M {mid} {bracket_y} V {y}" class="edge" marker-end="url(#arrow)"/>'
            f'<text x="{mid + 8}" y="{(bracket_y + y) / 2 + 4}" class="edge-label">{escape(rule.label)}</text>'
        )
    for state, (x, y) in pos.items():
        kind = "terminal" if state in TERMINAL_STATES else "open"
        parts.append(
            f'<g class="state {kind}" data-state="{state}"><rect x="{x}" y="{y}" width="{box_w}" height="{box_h}" '
            f'rx="8"/><text x="{x + box_w / 2}" y="{y + 19}" text-anchor="middle">{escape(STATE_LABELS[state])}</text>'
            f'<text x="{x + box_w / 2}" y="{y + 35}" text-anchor="middle" class="code">{state}</text></g>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def _edge(src: tuple[float, float], dst: tuple[float, float], w: float, h: float, label: str, loop: bool) -> str:
    (sx, sy), (dx, dy) = src, dst
    if loop:  # a move within the state (escalate): a loop below the box
        x, y = sx + w / 2, sy + h
        path = f"M {x - 20} {y} C {x - 30} {y + 38}, {x + 30} {y + 38}, {x + 20} {y}"
        lx, ly = x, y + 44
    elif dx > sx:  # forward: right side to left side
        x1, y1, x2, y2 = sx + w, sy + h / 2, dx, dy + h / 2
        path = f"M {x1} {y1} C {x1 + 30} {y1}, {x2 - 30} {y2}, {x2} {y2}"
        lx, ly = (x1 + x2) / 2, (y1 + y2) / 2 - 6
    elif dx == sx:  # same column: straight down or up
        down = dy > sy
        side = 0.75 if down else 0.25  # the two directions side by side, not on one line
        x1, y1, x2, y2 = sx + w * side, sy + (h if down else 0), dx + w * side, dy + (0 if down else h)
        path = f"M {x1} {y1} L {x2} {y2}"
        lx, ly = x1 + 6, (y1 + y2) / 2 + 4
        return (
            f'<path d="{path}" class="edge" marker-end="url(#arrow)"/>'
            f'<text x="{lx:.0f}" y="{ly:.0f}" class="edge-label">{escape(label)}</text>'
        )
    else:  # backward: bottom to bottom, bending below the row
        x1, y1, x2, y2 = sx + w / 2, sy + h, dx + w / 2, dy + h
        bend = max(y1, y2) + 36
        path = f"M {x1} {y1} C {x1} {bend}, {x2} {bend}, {x2} {y2}"
        lx, ly = (x1 + x2) / 2, bend - 4
    return (
        f'<path d="{path}" class="edge" marker-end="url(#arrow)"/>'
        f'<text x="{lx:.0f}" y="{ly:.0f}" class="edge-label" text-anchor="middle">{escape(label)}</text>'
    )


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
