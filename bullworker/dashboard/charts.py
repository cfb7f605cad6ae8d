"""Charts drawn on the server as inline SVG: no script, no library, nothing fetched.

Colours come from classes styled by ``static/dashboard.css`` (``c-completed``,
``c-failed``, ``c-cancelled``, ``c-rate``); every text is escaped.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from markupsafe import Markup, escape

from bullworker.ops.history_views import Series

_STATES = ("completed", "failed", "cancelled")


def _label(moment: datetime, bucket: timedelta) -> str:
    return moment.strftime("%H:%M" if bucket < timedelta(hours=1) else "%d %H:00")


def _moments(series: Series) -> list[datetime]:
    return [series.start + series.bucket * i for i in range(len(series.completed))]


def _svg(width: int, height: int, label: str, body: list[str]) -> Markup:
    head = (
        f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" aria-label="{escape(label)}" '
        'xmlns="http://www.w3.org/2000/svg">'
    )
    return Markup(head + f"<title>{escape(label)}</title>" + "".join(body) + "</svg>")


def _axis(width: int, height: int, left: int, bottom: int, series: Series) -> list[str]:
    """The x axis' line and three time labels (first, middle, last bucket), UTC."""
    moments = _moments(series)
    plot = width - left - 8
    body = [f'<line class="axis" x1="{left}" y1="{height - bottom}" x2="{width - 8}" '
            f'y2="{height - bottom}"/>']  # fmt: skip
    for index in sorted({0, len(moments) // 2, len(moments) - 1}):
        x = left + plot * (index + 0.5) / len(moments)
        anchor = "start" if index == 0 else "end" if index == len(moments) - 1 else "middle"
        text = escape(_label(moments[index], series.bucket))
        body.append(f'<text x="{x:.1f}" y="{height - 4}" text-anchor="{anchor}">{text}</text>')
    return body


def throughput_chart(series: Series, *, width: int = 720, height: int = 170) -> Markup:
    """Stacked bars of the jobs finished per bucket: completed, failed, cancelled."""
    left, bottom, top = 44, 20, 10
    count = len(series.completed)
    totals = [
        sum(values)
        for values in zip(series.completed, series.failed, series.cancelled, strict=True)
    ]
    peak = max([*totals, 1])
    plot_w, plot_h = width - left - 8, height - bottom - top
    step = plot_w / count
    body = [
        f'<text x="{left - 6}" y="{top + 8}" text-anchor="end">{peak}</text>',
        f'<text x="{left - 6}" y="{height - bottom}" text-anchor="end">0</text>',
    ]
    for index, moment in enumerate(_moments(series)):
        x = left + index * step
        y = float(height - bottom)
        parts = [(s, getattr(series, s)[index]) for s in _STATES]
        tip = f"{_label(moment, series.bucket)} UTC: " + ", ".join(f"{n} {s}" for s, n in parts)
        body.append(f"<g><title>{escape(tip)}</title>")
        body.append(
            f'<rect class="hit" x="{x:.1f}" y="{top}" width="{step:.1f}" height="{plot_h}"/>'
        )
        for state, n in parts:
            if n:
                h = plot_h * n / peak
                y -= h
                body.append(
                    f'<rect class="c-{state}" x="{x + step * 0.1:.1f}" y="{y:.1f}" '
                    f'width="{max(step * 0.8, 1):.1f}" height="{h:.1f}"/>'
                )
        body.append("</g>")
    body += _axis(width, height, left, bottom, series)
    total = series.total
    return _svg(width, height, f"jobs finished per {_unit(series)}: {total} in all", body)


def failure_rate_chart(series: Series, *, width: int = 720, height: int = 170) -> Markup:
    """The share of failures per bucket, failed / (completed + failed), as a line."""
    left, bottom, top = 44, 20, 10
    rates = series.failure_rate
    plot_w, plot_h = width - left - 8, height - bottom - top
    step = plot_w / len(rates)
    body = [
        f'<text x="{left - 6}" y="{top + 8}" text-anchor="end">100%</text>',
        f'<text x="{left - 6}" y="{height - bottom}" text-anchor="end">0%</text>',
        f'<line class="grid" x1="{left}" y1="{top}" x2="{width - 8}" y2="{top}"/>',
    ]
    run: list[str] = []
    for index, (moment, rate) in enumerate(zip(_moments(series), rates, strict=True)):
        x = left + (index + 0.5) * step
        if rate is None:
            body += _polyline(run)
            run = []
            continue
        y = height - bottom - plot_h * rate
        run.append(f"{x:.1f},{y:.1f}")
        tip = f"{_label(moment, series.bucket)} UTC: {rate:.0%} failed"
        body.append(
            f'<circle class="c-rate" cx="{x:.1f}" cy="{y:.1f}" r="2.5">'
            f"<title>{escape(tip)}</title></circle>"
        )
    body += _polyline(run)
    body += _axis(width, height, left, bottom, series)
    return _svg(width, height, f"failure rate per {_unit(series)}", body)


def _polyline(points: list[str]) -> list[str]:
    if len(points) < 2:
        return []
    return [f'<polyline class="c-rate" fill="none" points="{" ".join(points)}"/>']


def sparkline(series: Series | None, *, width: int = 120, height: int = 26) -> Markup:
    """Tiny bars of the jobs finished per bucket, failures in red (empty without rows)."""
    if series is None:
        return _svg(width, height, "no job finished", [])
    totals = [
        sum(values)
        for values in zip(series.completed, series.failed, series.cancelled, strict=True)
    ]
    peak = max([*totals, 1])
    step = width / len(totals)
    body = []
    for index, total in enumerate(totals):
        failed = series.failed[index] + series.cancelled[index]
        x = index * step
        h_all, h_bad = (height - 2) * total / peak, (height - 2) * failed / peak
        if total:
            body.append(
                f'<rect class="c-completed" x="{x:.1f}" y="{height - h_all:.1f}" '
                f'width="{max(step - 0.5, 0.5):.1f}" height="{h_all:.1f}"/>'
            )
        if failed:
            body.append(
                f'<rect class="c-failed" x="{x:.1f}" y="{height - h_bad:.1f}" '
                f'width="{max(step - 0.5, 0.5):.1f}" height="{h_bad:.1f}"/>'
            )
    label = f"{series.total} finished, {sum(series.failed)} failed per {_unit(series)}"
    return _svg(width, height, label, body)


def _unit(series: Series) -> str:
    return "minute" if series.bucket < timedelta(hours=1) else "hour"
