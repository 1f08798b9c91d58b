"""The post-incident report as one self-contained HTML page: inline CSS and SVG, no script, no external asset,
so it opens offline and can be attached to the review as a single file."""

from __future__ import annotations

from collections.abc import Callable
from html import escape
from typing import Final

from floodgate.cli.render import rate
from floodgate.cli.show import source_text
from floodgate.cli.timeline import DenyMoment, HoldSpan, Incident, Lane, Report, Source, Span
from floodgate.cli.times import clock
from floodgate.cli.views import counted, event_name, evidence_rate, rule_text, short_actor
from floodgate.core.durations import format_duration
from floodgate.core.effect import DenyEffect, TrafficPoint
from floodgate.core.records import EventKind, LogEvent, OriginKind

# Timeline geometry, in SVG user units (1 unit = 1 CSS pixel at the page's width).
WIDTH: Final = 1120
AXIS_H: Final = 30
GROUP_H: Final = 28
LANE_H: Final = 24
BAR_H: Final = 12
PAD_RIGHT: Final = 16
TICK_STEPS: Final = (60, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800)

ORIGIN_COLOURS: Final = {
    OriginKind.AUTOMATIC: "#1570ef",
    OriginKind.ALARM: "#f79009",
    OriginKind.MANUAL: "#7a5af8",
}
END_COLOURS: Final = {
    EventKind.EXPIRE: "#667085",
    EventKind.EVICT: "#d92d20",
    EventKind.UNBLOCK: "#12b76a",
    EventKind.QUARANTINE: "#f79009",
}

CSS: Final = """
:root { --ink: #101828; --muted: #667085; --line: #eaecf0; --bg: #f6f7f9; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--ink);
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif; }
main { max-width: 1200px; margin: 0 auto; padding: 28px 24px 48px; }
h1 { font-size: 24px; margin: 0 0 4px; letter-spacing: -0.01em; }
h2 { font-size: 16px; margin: 0 0 4px; }
.meta, .hint { color: var(--muted); }
.hint { font-size: 12.5px; margin: 0 0 12px; }
.cards { display: grid; grid-template-columns: repeat(5, 1fr); gap: 12px; margin: 20px 0 8px; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 10px; padding: 12px 16px; }
.card b { display: block; font-size: 24px; font-weight: 650; font-variant-numeric: tabular-nums; }
.card span { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .05em; }
section { background: #fff; border: 1px solid var(--line); border-radius: 10px; padding: 18px 20px;
  margin-top: 18px; }
svg { display: block; max-width: 100%; height: auto; }
svg text { font-family: "DejaVu Sans Mono", ui-monospace, monospace; font-size: 12px; fill: var(--ink); }
svg .axis text { font-family: system-ui, "DejaVu Sans", sans-serif; font-size: 11px; fill: var(--muted); }
svg .group text { font-weight: 700; }
.legend { display: flex; flex-wrap: wrap; gap: 6px 18px; margin: 12px 0 0; padding: 0; list-style: none;
  color: var(--muted); font-size: 12.5px; }
.legend svg { display: inline-block; vertical-align: -2px; margin-right: 5px; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th { text-align: left; color: var(--muted); font-weight: 600; font-size: 12px; padding: 6px 8px;
  border-bottom: 2px solid var(--line); white-space: nowrap; }
td { border-bottom: 1px solid var(--line); padding: 6px 8px; vertical-align: top; }
tbody tr:nth-child(even) td { background: #fcfcfd; }
.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.mono { font-family: "DejaVu Sans Mono", ui-monospace, monospace; font-size: 12.5px; white-space: nowrap; }
.when, .who { white-space: nowrap; font-variant-numeric: tabular-nums; }
.meter { width: 90px; height: 8px; background: var(--line); border-radius: 4px; display: inline-block;
  vertical-align: middle; margin-left: 8px; overflow: hidden; }
.meter i { display: block; height: 100%; background: #f04438; border-radius: 4px; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 11px; font-weight: 700;
  letter-spacing: .03em; white-space: nowrap; }
.BLOCK { background: #fee4e2; color: #b42318; } .EXTEND { background: #fef0c7; color: #b54708; }
.EVICT { background: #f4ebff; color: #6941c6; } .EXPIRE { background: #f2f4f7; color: #475467; }
.UNBLOCK { background: #d1fadf; color: #027a48; } .REPAIR { background: #d1e9ff; color: #175cd3; }
.REFUSED { background: #fce7f6; color: #c11574; } .DRYRUN { background: #fff; color: #344054;
  border: 1px dashed #98a2b3; }
.empty { color: var(--muted); font-style: italic; margin: 8px 0 0; }
h3 { font-size: 13.5px; font-weight: 600; margin: 14px 0 6px; }
.incident + .incident { border-top: 1px solid var(--line); margin-top: 10px; }
footer { color: var(--muted); font-size: 12px; margin-top: 20px; }
@media print { body { background: #fff; } section, .card { break-inside: avoid; } }
"""


def render(report: Report) -> str:
    """The whole page."""
    title = f"Floodgate incident report: {report.stack}, {clock(report.since)} to {clock(report.until)}"
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{escape(title)}</title>",
            f"<style>{CSS}</style>",
            "</head>",
            "<body><main>",
            _header(report),
            _traffic_section(report),
            _timeline_section(report),
            _effects_section(report.effects, _time_format(report)),
            _sources_section(report.sources, _time_format(report)),
            _log_section(report.events, _time_format(report)),
            f"<footer>Made by floodgate report at {escape(clock(report.generated))}. All times UTC.</footer>",
            "</main></body>",
            "</html>",
        ]
    )


def _header(report: Report) -> str:
    denied = report.denied_sources
    peak = max((s.peak_pps for s in report.sources), default=0.0)
    cards = [
        (str(len(report.events)), "events"),
        (str(denied), "sources denied"),
        (rate(peak, "pps") if peak else "none", "peak source rate"),
        (str(report.in_force), "denies in force now"),
        (str(report.count(EventKind.REFUSED)), "refused"),
    ]
    return (
        f"<header><h1>Floodgate incident report</h1>"
        f'<div class="meta">Stack <b>{escape(report.stack)}</b> · {escape(clock(report.since))} to '
        f"{escape(clock(report.until))} ({format_duration(report.until - report.since)})</div></header>"
        '<div class="cards">'
        + "".join(
            f'<div class="card"><b>{escape(value)}</b><span>{label}</span></div>' for value, label in cards
        )
        + "</div>"
    )


def _time_format(report: Report) -> Callable[[float], str]:
    """Table times: "17:44:21" when the whole window lies in one UTC day (the header has the date)."""
    if clock(report.since)[:10] == clock(report.until)[:10]:
        return lambda at: clock(at)[11:19]
    return lambda at: clock(at)[5:19]


def _section(name: str, title: str, hint: str, body: str) -> str:
    return f'<section id="{name}-section"><h2>{title}</h2><p class="hint">{escape(hint)}</p>{body}</section>'


def _empty(text: str) -> str:
    return f'<p class="empty">{text}</p>'


# -- timeline -----------------------------------------------------------------------------------------------


def _timeline_section(report: Report) -> str:
    hint = (
        "One row per denied source and NACL. A bar is a deny in force, coloured by who asked for it; "
        "hover over bars and marks for details."
    )
    dry_runs = report.count(EventKind.DRYRUN)
    empty = "No denies in this window." + (
        f" The deny log below has {dry_runs} dry-run events: what would have been done." if dry_runs else ""
    )
    body = _timeline_svg(report) + _legend() if report.lanes else _empty(empty)
    return _section("timeline", "Timeline of denies per NACL", hint, body)


class _Scale:
    """Epoch seconds to x, over the report's window."""

    def __init__(self, since: float, until: float, x0: float, x1: float) -> None:
        self.since, self.until, self.x0, self.x1 = since, until, x0, x1

    def __call__(self, at: float) -> float:
        share = (min(max(at, self.since), self.until) - self.since) / (self.until - self.since)
        return round(self.x0 + share * (self.x1 - self.x0), 1)

    def ticks(self) -> list[float]:
        span = self.until - self.since
        step = next((s for s in TICK_STEPS if span / s <= 8), TICK_STEPS[-1])
        first = (self.since // step + 1) * step
        return [first + i * step for i in range(int((self.until - first) // step) + 1)]

    def label(self, at: float) -> str:
        text = clock(at)  # 2025-11-24 16:30:00Z
        return text[11:16] if self.until - self.since <= 86400 else f"{text[5:10]} {text[11:16]}"


def _lane_label(lane: Lane) -> str:
    label = lane.cidr if lane.direction == "ingress" else f"{lane.cidr} ({lane.direction})"
    return f"{label} (foreign)" if lane.foreign else label


def _timeline_svg(report: Report) -> str:
    label_w = min(340, max(150, 24 + 7.3 * max(len(_lane_label(lane)) for lane in report.lanes)))
    scale = _Scale(report.since, report.until, label_w, WIDTH - PAD_RIGHT)
    groups: dict[str, list[Lane]] = {}
    for lane in report.lanes:
        groups.setdefault(lane.nacl_id, []).append(lane)
    height = AXIS_H + GROUP_H * len(groups) + LANE_H * len(report.lanes) + 8
    parts = [
        f'<svg id="timeline" role="img" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" '
        f'data-lanes="{len(report.lanes)}">',
        f"<title>Denies per NACL from {escape(clock(report.since))} to {escape(clock(report.until))}</title>",
        _axis(scale, height),
    ]
    y = AXIS_H
    for nacl_id, nacl_lanes in groups.items():
        parts.append(_group(nacl_id, nacl_lanes, y))
        y += GROUP_H
        for index, lane in enumerate(nacl_lanes):
            parts.append(_lane(lane, y, scale, label_w, shaded=index % 2 == 1))
            y += LANE_H
    parts.append("</svg>")
    return "".join(parts)


def _axis(scale: _Scale, height: int) -> str:
    parts = ['<g class="axis">']
    for at in scale.ticks():
        x = scale(at)
        parts.append(
            f'<line x1="{x}" y1="{AXIS_H - 6}" x2="{x}" y2="{height - 4}" stroke="#eaecf0"/>'
            f'<text x="{x}" y="{AXIS_H - 12}" text-anchor="middle">{scale.label(at)}</text>'
        )
    baseline = AXIS_H - 6
    parts.append(
        f'<line x1="{scale.x0}" y1="{baseline}" x2="{scale.x1}" y2="{baseline}" stroke="#d0d5dd"/></g>'
    )
    return "".join(parts)


def _group(nacl_id: str, lanes: list[Lane], y: float) -> str:
    """The header row of one NACL's lanes."""
    ours = [lane for lane in lanes if not lane.foreign]
    denies = sum(len(lane.spans) for lane in ours)
    summary = f"{counted(len(ours), 'source')}, {counted(denies, 'deny', 'denies')}"
    if len(ours) < len(lanes):
        summary += f", {counted(len(lanes) - len(ours), 'foreign entry', 'foreign entries')}"
    return (
        f'<g class="group"><rect x="0" y="{y + 4}" width="{WIDTH}" height="{GROUP_H - 6}" rx="4" '
        'fill="#f2f4f7"/>'
        f'<text x="8" y="{y + 19}">{escape(nacl_id)}</text>'
        f'<text x="{WIDTH - PAD_RIGHT}" y="{y + 19}" text-anchor="end" font-weight="400" fill="#667085">'
        f"{summary}</text></g>"
    )


def _lane(lane: Lane, y: float, scale: _Scale, label_w: float, *, shaded: bool) -> str:
    middle = y + LANE_H / 2
    parts = ['<g class="lane">']
    if shaded:
        parts.append(f'<rect x="0" y="{y}" width="{WIDTH}" height="{LANE_H}" fill="#fafafb"/>')
    parts.append(f'<text x="16" y="{middle + 4}">{escape(_lane_label(lane))}</text>')
    parts.append(
        f'<line x1="{label_w}" y1="{middle}" x2="{scale.x1}" y2="{middle}" stroke="#eaecf0" '
        'stroke-dasharray="2 3"/>'
    )
    parts += [_span(lane, span, middle, scale) for span in lane.spans]
    parts.append("</g>")
    return "".join(parts)


def _span(lane: Lane, span: Span, middle: float, scale: _Scale) -> str:
    if lane.foreign:
        return _foreign_span(lane, span, middle, scale)
    colour = ORIGIN_COLOURS[span.origin.kind] if span.origin else "#98a2b3"
    x0 = scale(span.start)
    width = max(scale(span.end) - x0, 3.0)
    parts = [
        f'<g class="span" data-cidr="{escape(lane.cidr)}">',
        f"<title>{escape(_span_text(lane, span))}</title>",
        f'<rect x="{x0}" y="{middle - BAR_H / 2}" width="{width}" height="{BAR_H}" rx="3" fill="{colour}"/>',
    ]
    if span.started_before:
        parts.append(_arrow(x0 + 1, middle, -1, "#fff"))
    if span.open_end:
        parts.append(_arrow(x0 + width - 1, middle, 1, "#fff"))
    elif span.ended_by is not None:
        parts.append(_end_mark(span.ended_by, x0 + width, middle))
    parts.append("</g>")
    for mark in span.marks:
        text = escape(f"{mark.kind} at {clock(mark.at)}: {mark.reason}")
        parts.append(
            f'<g class="mark {mark.kind}"><title>{text}</title>{_mark(mark.kind, scale(mark.at), middle)}</g>'
        )
    return "".join(parts)


def _foreign_span(lane: Lane, span: Span, middle: float, scale: _Scale) -> str:
    """A foreign entry: an outline from when it was found, never a deny bar."""
    x0 = scale(span.start)
    width = max(scale(span.end) - x0, 3.0)
    found = clock(span.start)
    text = f"{lane.cidr} in {lane.nacl_id}: foreign entry found {found}, not Floodgate's ({span.reason})"
    return (
        f'<g class="span foreign" data-cidr="{escape(lane.cidr)}"><title>{escape(text)}</title>'
        f'<rect x="{x0}" y="{middle - BAR_H / 2}" width="{width}" height="{BAR_H}" rx="3" fill="none" '
        'stroke="#98a2b3" stroke-dasharray="4 3"/></g>'
    )


def _mark(kind: EventKind, x: float, middle: float) -> str:
    """EXTEND: a white diamond; REPAIR: a blue ring."""
    if kind is EventKind.EXTEND:
        diamond = f"M{x} {middle - 6} l6 6 l-6 6 l-6 -6 z"
        return f'<path d="{diamond}" fill="#fff" stroke="#101828" stroke-width="1.5"/>'
    return f'<circle cx="{x}" cy="{middle}" r="5" fill="#fff" stroke="#175cd3" stroke-width="2"/>'


def _arrow(x: float, middle: float, direction: int, colour: str) -> str:
    """A small arrowhead inside a bar's end: the deny goes on beyond the window on that side."""
    tip, base = x + 6 * direction, x + 1 * direction
    return f'<path d="M{base} {middle - 4} L{tip} {middle} L{base} {middle + 4} z" fill="{colour}"/>'


def _end_mark(kind: EventKind, x: float, middle: float) -> str:
    """EXPIRE: a grey dot; EVICT: a red cross; UNBLOCK: a green square."""
    colour = END_COLOURS[kind]
    if kind is EventKind.EVICT:
        cross = f"M{x - 4} {middle - 4} l8 8 M{x + 4} {middle - 4} l-8 8"
        return f'<path d="{cross}" stroke="{colour}" stroke-width="2.5" stroke-linecap="round"/>'
    if kind is EventKind.UNBLOCK:
        return f'<rect x="{x - 4}" y="{middle - 4}" width="8" height="8" fill="{colour}" stroke="#fff"/>'
    return f'<circle cx="{x}" cy="{middle}" r="4.5" fill="{colour}" stroke="#fff" stroke-width="1.5"/>'


def _span_text(lane: Lane, span: Span) -> str:
    where = f"{lane.nacl_id} rule {rule_text(span.rule, lane.direction)}" if span.rule else lane.nacl_id
    began = "before the window" if span.started_before else clock(span.start)
    by = f" by {span.origin.kind}:{short_actor(span.origin.name)}" if span.origin and span.origin.name else ""
    ended = (
        f"{span.ended_by} at {clock(span.end)}: {span.end_reason}"
        if span.ended_by
        else "still in force at the end of the window"
    )
    return f"{lane.cidr} in {where}: denied {began}{by} ({span.reason}); {ended}"


def _legend() -> str:
    def swatch(body: str) -> str:
        return f'<svg width="22" height="14" viewBox="0 0 22 14">{body}</svg>'

    def bar(colour: str) -> str:
        return f'<rect x="1" y="2" width="20" height="10" rx="3" fill="{colour}"/>'

    items = [(swatch(bar(colour)), f"{kind} deny") for kind, colour in ORIGIN_COLOURS.items()]
    items += [
        (swatch(_mark(EventKind.EXTEND, 11, 7)), "extended"),
        (swatch(_mark(EventKind.REPAIR, 11, 7)), "repaired"),
        (swatch(_end_mark(EventKind.EXPIRE, 11, 7)), "expired"),
        (swatch(_end_mark(EventKind.EVICT, 11, 7)), "evicted"),
        (swatch(_end_mark(EventKind.UNBLOCK, 11, 7)), "unblocked"),
        (swatch(bar("#98a2b3") + _arrow(20, 7, 1, "#fff")), "continues past the window"),
        (
            swatch(
                '<rect x="1" y="2" width="20" height="10" rx="3" fill="none" stroke="#98a2b3" '
                'stroke-dasharray="4 3"/>'
            ),
            "foreign entry (not Floodgate's)",
        ),
    ]
    return '<ul class="legend">' + "".join(f"<li>{icon}{escape(text)}</li>" for icon, text in items) + "</ul>"


# -- traffic per incident -----------------------------------------------------------------------------------

TRAFFIC_H: Final = 230
PLOT_TOP: Final = 26
PLOT_BOTTOM: Final = 200
PLOT_LEFT: Final = 80
REJECT_COLOUR: Final = "#d92d20"
ACCEPT_COLOUR: Final = "#f79009"
INBOUND_COLOUR: Final = "#101828"
HOLD_COLOUR: Final = "#ebe9fe"
EDGE_S: Final = 300.0  # the panel shows this much before and after the incident


def _traffic_section(report: Report) -> str:
    hint = (
        "Per incident: inbound packets per second (black line), the part of it from denied sources that "
        "the NACLs REJECTed (red) and that still got through (orange), as the expirer sampled it once per "
        "window; the dots at a deny's start are the detector's evidence, the ACCEPT rate it denied. Red "
        "lines: denies began; grey: denies ended; shaded: capacity held. Flow logs arrive minutes late: "
        "each sample shows the window before it."
    )
    if not report.incidents:
        return _section(
            "traffic", "Traffic and the effect of the denies", hint, _empty("No incident in this window.")
        )
    panels = [
        _incident_panel(report, number, incident) for number, incident in enumerate(report.incidents, 1)
    ]
    return _section(
        "traffic", "Traffic and the effect of the denies", hint, "".join(panels) + _traffic_legend()
    )


def _incident_panel(report: Report, number: int, incident: Incident) -> str:
    since = max(report.since, incident.start - EDGE_S)
    until = min(report.until, incident.end + EDGE_S)
    if until <= since:
        until = since + 60
    scale = _Scale(since, until, PLOT_LEFT, WIDTH - PAD_RIGHT)
    peak = max(
        [incident.peak_inbound_pps]
        + [p.covered_accept_pps + p.covered_reject_pps for p in incident.points]
        + [m.accept_pps_before for m in incident.moments]
    )
    top = _nice_ceiling(peak)

    def y(pps: float) -> float:
        return round(PLOT_BOTTOM - (PLOT_BOTTOM - PLOT_TOP) * min(pps, top) / top, 1)

    parts = [
        f'<svg class="traffic" id="traffic-{number}" role="img" viewBox="0 0 {WIDTH} {TRAFFIC_H}" '
        f'width="{WIDTH}" height="{TRAFFIC_H}" data-points="{len(incident.points)}" '
        f'data-holds="{len(incident.holds)}">',
        f"<title>Incident {number}: traffic from {escape(clock(since))} to {escape(clock(until))}</title>",
    ]
    parts += [_hold_band(hold, scale) for hold in incident.holds]
    parts.append(_pps_axis(scale, top, y))
    parts += _areas(incident.points, scale, y)
    parts += [_moment(moment, scale, y) for moment in incident.moments]
    parts.append("</svg>")
    return f'<div class="incident"><h3>{escape(_incident_title(number, incident))}</h3>{"".join(parts)}</div>'


def _incident_title(number: int, incident: Incident) -> str:
    title = f"Incident {number}: {clock(incident.start)[:16]} to {clock(incident.end)[11:16]}"
    title += f" ({format_duration(incident.end - incident.start)})"
    if incident.peak_inbound_pps:
        title += f", inbound peak {rate(incident.peak_inbound_pps, 'pps')}"
    if incident.points:
        best = max(incident.points, key=lambda p: p.covered_share)
        title += f", denies covered up to {best.covered_share:.0%} of it"
        last = incident.points[-1]
        title += (
            f"; last sample {rate(last.covered_reject_pps, 'pps')} REJECTed, "
            f"{rate(last.covered_accept_pps, 'pps')} ACCEPTed from denied sources"
        )
    return title


def _nice_ceiling(value: float) -> float:
    """1, 2 or 5 times a power of ten, at least `value` (and at least 10)."""
    step = 10.0
    while step < value:
        for factor in (2, 2.5, 2):
            step *= factor
            if step >= value:
                break
    return step


def _pps_axis(scale: _Scale, top: float, y: Callable[[float], float]) -> str:
    parts = ['<g class="axis">']
    for share in (0.0, 0.25, 0.5, 0.75, 1.0):
        level = y(top * share)
        parts.append(
            f'<line x1="{scale.x0}" y1="{level}" x2="{scale.x1}" y2="{level}" stroke="#eaecf0"/>'
            f'<text x="{scale.x0 - 8}" y="{level + 4}" text-anchor="end">{_axis_rate(top * share)}</text>'
        )
    for at in scale.ticks():
        parts.append(
            f'<text x="{scale(at)}" y="{PLOT_BOTTOM + 18}" text-anchor="middle">{scale.label(at)}</text>'
        )
    parts.append("</g>")
    return "".join(parts)


def _axis_rate(value: float) -> str:
    """200 kpps, 2.5 kpps, 0 pps: the axis's round values without trailing zeros."""
    text = rate(value, "pps")
    number, _, unit = text.partition(" ")
    return f"{number.rstrip('0').rstrip('.') if '.' in number else number} {unit}"


def _hold_band(hold: HoldSpan, scale: _Scale) -> str:
    x0, x1 = scale(hold.start), scale(hold.end)
    held = "still held at the end of the window" if hold.open_end else f"released {clock(hold.end)}"
    text = f"capacity of {hold.group} held from {clock(hold.start)}; {held}"
    return (
        f'<g class="hold"><title>{escape(text)}</title>'
        f'<rect x="{x0}" y="{PLOT_TOP}" width="{max(x1 - x0, 2.0)}" height="{PLOT_BOTTOM - PLOT_TOP}" '
        f'fill="{HOLD_COLOUR}"/>'
        f'<text x="{x0 + 4}" y="{PLOT_TOP + 12}" fill="#5925dc">capacity held: {escape(hold.group)}'
        "</text></g>"
    )


def _areas(points: tuple[TrafficPoint, ...], scale: _Scale, y: Callable[[float], float]) -> list[str]:
    """Stacked areas (REJECTed, then ACCEPTed from denied sources) and the inbound line."""
    if not points:
        return []
    if len(points) == 1:  # one sample: a narrow column rather than an area without width
        return _column(points[0], scale, y)
    xs = [scale(p.at) for p in points]
    rejected = [y(p.covered_reject_pps) for p in points]
    covered = [y(p.covered_reject_pps + p.covered_accept_pps) for p in points]
    base = f"{xs[-1]},{PLOT_BOTTOM} {xs[0]},{PLOT_BOTTOM}"
    parts = [
        f'<polygon class="rejected" points="{_path(xs, rejected)} {base}" fill="{REJECT_COLOUR}" '
        'fill-opacity="0.55"/>',
        f'<polygon class="accepted" points="{_path(xs, covered)} {_path(xs[::-1], rejected[::-1])}" '
        f'fill="{ACCEPT_COLOUR}" fill-opacity="0.7"/>',
        f'<polyline class="inbound" points="{_path(xs, [y(p.inbound_pps) for p in points])}" fill="none" '
        f'stroke="{INBOUND_COLOUR}" stroke-width="2"/>',
    ]
    parts += [_sample_dot(point, x, y) for x, point in zip(xs, points, strict=True)]
    return parts


def _column(point: TrafficPoint, scale: _Scale, y: Callable[[float], float]) -> list[str]:
    x = scale(point.at) - 4
    rejected, covered = y(point.covered_reject_pps), y(point.covered_reject_pps + point.covered_accept_pps)
    return [
        f'<rect class="rejected" x="{x}" y="{rejected}" width="8" '
        f'height="{round(PLOT_BOTTOM - rejected, 1)}" fill="{REJECT_COLOUR}" fill-opacity="0.55"/>',
        f'<rect class="accepted" x="{x}" y="{covered}" width="8" height="{round(rejected - covered, 1)}" '
        f'fill="{ACCEPT_COLOUR}" fill-opacity="0.7"/>',
        _sample_dot(point, scale(point.at), y),
    ]


def _sample_dot(point: TrafficPoint, x: float, y: Callable[[float], float]) -> str:
    text = (
        f"{clock(point.at)}: inbound {rate(point.inbound_pps, 'pps')}; from denied sources "
        f"{rate(point.covered_reject_pps, 'pps')} REJECTed, {rate(point.covered_accept_pps, 'pps')} "
        f"ACCEPTed ({point.covered_share:.0%} of inbound)"
    )
    return (
        f'<g class="sample"><title>{escape(text)}</title><circle cx="{x}" cy="{y(point.inbound_pps)}" '
        f'r="3" fill="{INBOUND_COLOUR}"/></g>'
    )


def _path(xs: list[float], ys: list[float]) -> str:
    return " ".join(f"{x},{y}" for x, y in zip(xs, ys, strict=True))


def _moment(moment: DenyMoment, scale: _Scale, y: Callable[[float], float]) -> str:
    x = scale(moment.at)
    parts = ['<g class="moment">']
    if moment.began:
        text = f"{clock(moment.at)}: denied {', '.join(moment.began)}"
        text += f" ({rate(moment.accept_pps_before, 'pps')} ACCEPTed before)"
        parts.append(
            f"<title>{escape(text)}</title>"
            f'<line class="began" x1="{x}" y1="{PLOT_TOP}" x2="{x}" y2="{PLOT_BOTTOM}" '
            f'stroke="{REJECT_COLOUR}" stroke-width="1.5" stroke-dasharray="4 3"/>'
            f'<text x="{x + 4}" y="{PLOT_BOTTOM - 4}" fill="{REJECT_COLOUR}">+{len(moment.began)}</text>'
        )
        if moment.accept_pps_before > 0:  # a manual deny has no evidence: no dot
            parts.append(
                f'<circle cx="{x}" cy="{y(moment.accept_pps_before)}" r="5" fill="{ACCEPT_COLOUR}" '
                'stroke="#fff" stroke-width="1.5"/>'
            )
        if moment.inbound_pps:
            parts.append(
                f'<circle cx="{x}" cy="{y(moment.inbound_pps)}" r="4" fill="#fff" stroke="{INBOUND_COLOUR}" '
                'stroke-width="2"/>'
            )
    if moment.ended:
        text = f"{clock(moment.at)}: deny ended for {', '.join(moment.ended)}"
        parts.append(
            f"<title>{escape(text)}</title>"
            f'<line class="ended" x1="{x}" y1="{PLOT_TOP}" x2="{x}" y2="{PLOT_BOTTOM}" stroke="#667085" '
            'stroke-width="1.5" stroke-dasharray="2 3"/>'
            f'<text x="{x + 4}" y="{PLOT_TOP + 26}" fill="#667085">-{len(moment.ended)}</text>'
        )
    parts.append("</g>")
    return "".join(parts)


def _traffic_legend() -> str:
    def swatch(body: str) -> str:
        return f'<svg width="22" height="14" viewBox="0 0 22 14">{body}</svg>'

    items = [
        (
            swatch(f'<line x1="1" y1="7" x2="21" y2="7" stroke="{INBOUND_COLOUR}" stroke-width="2"/>'),
            "inbound",
        ),
        (
            swatch(f'<rect x="1" y="2" width="20" height="10" fill="{REJECT_COLOUR}" fill-opacity="0.55"/>'),
            "denied, REJECTed by the NACLs",
        ),
        (
            swatch(f'<rect x="1" y="2" width="20" height="10" fill="{ACCEPT_COLOUR}" fill-opacity="0.7"/>'),
            "denied source, still ACCEPTed",
        ),
        (swatch(f'<circle cx="11" cy="7" r="5" fill="{ACCEPT_COLOUR}"/>'), "ACCEPT rate when denied"),
        (
            swatch(
                f'<line x1="11" y1="0" x2="11" y2="14" stroke="{REJECT_COLOUR}" stroke-width="1.5" '
                'stroke-dasharray="4 3"/>'
            ),
            "denies began",
        ),
        (
            swatch(
                '<line x1="11" y1="0" x2="11" y2="14" stroke="#667085" stroke-width="1.5" '
                'stroke-dasharray="2 3"/>'
            ),
            "denies ended",
        ),
        (swatch(f'<rect x="1" y="1" width="20" height="12" fill="{HOLD_COLOUR}"/>'), "capacity held"),
    ]
    return '<ul class="legend">' + "".join(f"<li>{icon}{escape(text)}</li>" for icon, text in items) + "</ul>"


def _effects_section(effects: tuple[DenyEffect, ...], when: Callable[[float], str]) -> str:
    title, hint = (
        "Effect of each deny",
        "ACCEPT rate before (the detector's evidence at the deny), REJECT rate after (the expirer's "
        "samples): a deny that works turns ACCEPT into REJECT while the flood goes on; a source that "
        "stopped shows none.",
    )
    if not effects:
        return _section("effects", title, hint, _empty("No deny began in this window."))
    head = _head(
        ("Source", ""),
        ("Denied", ""),
        ("ACCEPT before", "num"),
        ("REJECT after (peak)", "num"),
        ("Latest REJECT", "num"),
        ("Latest ACCEPT", "num"),
        ("Samples", "num"),
        ("Source now", ""),
        ("Deny ended", ""),
    )

    def optional(value: float | None) -> str:
        return "" if value is None else rate(value, "pps")

    rows = [
        "<tr>"
        f'<td class="mono">{escape(e.cidr)}</td>'
        f'<td class="when">{when(e.denied_at)}</td>'
        f'<td class="num">{rate(e.accept_pps_before, "pps")}</td>'
        f'<td class="num">{optional(e.reject_pps_peak)}</td>'
        f'<td class="num">{optional(e.reject_pps_latest)}</td>'
        f'<td class="num">{optional(e.accept_pps_latest)}</td>'
        f'<td class="num">{e.samples}</td>'
        f"<td>{escape(source_text(e))}</td>"
        f'<td class="when">{"in force" if e.ended_at is None else when(e.ended_at)}</td>'
        "</tr>"
        for e in effects
    ]
    return _section("effects", title, hint, _table("effects", head, rows))


# -- tables -------------------------------------------------------------------------------------------------


def _sources_section(sources: tuple[Source, ...], when: Callable[[float], str]) -> str:
    title, hint = (
        "Top sources",
        "Peak rates in the detector's evidence when a source was denied, extended or refused.",
    )
    if not sources:
        return _section("sources", title, hint, _empty("No rated sources in this window."))
    peak = max(s.peak_pps for s in sources)
    head = _head(
        ("#", "num"),
        ("Source", ""),
        ("Peak rate", "num"),
        ("Peak bandwidth", "num"),
        ("Share", "num"),
        ("Addresses", "num"),
        ("Offence", "num"),
        ("NACLs", "num"),
        ("Refused", "num"),
        ("First seen", ""),
        ("Last seen", ""),
    )
    rows = [
        "<tr>"
        f'<td class="num">{rank}</td>'
        f'<td class="mono">{escape(source.cidr)}</td>'
        f'<td class="num">{rate(source.peak_pps, "pps")}{_meter(source.peak_pps / peak)}</td>'
        f'<td class="num">{rate(source.peak_bps, "bps")}</td>'
        f'<td class="num">{source.peak_share:.1%}</td>'
        f'<td class="num">{source.members}</td>'
        f'<td class="num">{source.offences or ""}</td>'
        f'<td class="num">{len(source.nacls)}</td>'
        f'<td class="num">{source.refusals or ""}</td>'
        f'<td class="when">{when(source.first_seen)}</td>'
        f'<td class="when">{when(source.last_seen)}</td>'
        "</tr>"
        for rank, source in enumerate(sources, 1)
    ]
    return _section("sources", title, hint, _table("sources", head, rows))


def _meter(share: float) -> str:
    return f'<span class="meter"><i style="width:{100 * share:.1f}%"></i></span>'


def _log_section(events: tuple[LogEvent, ...], when: Callable[[float], str]) -> str:
    title, hint = "Deny log", f"{counted(len(events), 'event')}, oldest first."
    if not events:
        return _section("log", title, hint, _empty("No events in this window."))
    head = _head(
        ("Time (UTC)", ""),
        ("Event", ""),
        ("CIDR", ""),
        ("NACL", ""),
        ("Rule", "num"),
        ("Rate", "num"),
        ("By", ""),
        ("Reason", ""),
    )
    rows = [
        "<tr>"
        f'<td class="when">{when(e.at)}</td>'
        f'<td><span class="badge {e.kind}">{escape(event_name(e))}</span></td>'
        f'<td class="mono">{escape(e.cidr)}</td>'
        f'<td class="mono">{escape(e.nacl_id or "")}</td>'
        f'<td class="num">{escape(rule_text(e.rule, e.direction))}</td>'
        f'<td class="num">{escape(evidence_rate(e.evidence))}</td>'
        f'<td class="who">{escape(short_actor(e.actor))}</td>'
        f"<td>{escape(e.reason)}</td>"
        "</tr>"
        for e in events
    ]
    return _section("log", title, hint, _table("log", head, rows))


def _table(name: str, head: str, rows: list[str]) -> str:
    return f'<table id="{name}">{head}<tbody>{"".join(rows)}</tbody></table>'


def _head(*columns: tuple[str, str]) -> str:
    return (
        "<thead><tr>"
        + "".join(f'<th class="{css}">{escape(name)}</th>' for name, css in columns)
        + "</tr></thead>"
    )
