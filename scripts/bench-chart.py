#!/usr/bin/python3
"""bench-chart.py — an SVG bar chart of `zhost-bench --json` throughput.

    zhost-bench --json > bench.json
    scripts/bench-chart.py bench.json -o bench.svg      (or: ... < bench.json > bench.svg)

Groups: 64 B 1->1, 64 B 4->4, 1 KiB 1->1, 1 KiB 4->4 (messages per second,
the median of the runs). Bars: zhost batched (zhost-batch), zhost
unbatched (zhost), nats-server (nats) and the raw forwarder (classic),
each with its value on it; a figure the run did not measure (or lost
messages in every run) is drawn as "n/a". Python's standard library only.
"""
import argparse
import json
import math
import sys
from xml.sax.saxutils import escape

GROUPS = [("throughput_64B_1to1", "64 B 1\u21921"), ("throughput_64B_4to4", "64 B 4\u21924"),
          ("throughput_1KiB_1to1", "1 KiB 1\u21921"), ("throughput_1KiB_4to4", "1 KiB 4\u21924")]
SYSTEMS = [("zhost-batch", "zhost batched", "#1b7837"), ("zhost", "zhost unbatched", "#7fbf7b"),
           ("nats", "nats-server", "#2166ac"), ("classic", "raw forwarder", "#b2abd2")]

W, H = 960, 560
LEFT, RIGHT, TOP, BOTTOM = 90, 20, 100, 110


def short(v):
    """1234567 -> '1.23M', 612345 -> '612k'."""
    if v >= 1e6:
        return "%.2fM" % (v / 1e6)
    if v >= 1e3:
        return "%.0fk" % (v / 1e3)
    return "%.0f" % v


def nice_max(v):
    """The least 1, 2, 2.5, 4, 5, 6 or 8 x 10^n at or above v (and 4 to 6 ticks below it)."""
    if v <= 0:
        return 1.0, 0.25
    exp = 10 ** math.floor(math.log10(v))
    for m, step in ((1, 0.25), (2, 0.5), (2.5, 0.5), (4, 1), (5, 1), (6, 1), (8, 2), (10, 2.5)):
        if m * exp >= v:
            return m * exp, step * exp
    return 10 * exp, 2.5 * exp


def values(report):
    rows = {r["name"]: r for r in report.get("results", [])}
    out = {}
    for key, _ in GROUPS:
        row = rows.get(key, {})
        for sys_key, _, _ in SYSTEMS:
            v = row.get(sys_key)
            out[key, sys_key] = v if isinstance(v, (int, float)) and math.isfinite(v) else None
    return out


def chart(report, note=None):
    vals = values(report)
    top, step = nice_max(max([v for v in vals.values() if v] or [0]) * 1.08)
    plot_w, plot_h = W - LEFT - RIGHT, H - TOP - BOTTOM
    y = lambda v: TOP + plot_h - plot_h * v / top  # noqa: E731
    cfg = report.get("config", {})
    subs = ["tcp on 127.0.0.1, %s msgs (64 B) and %s (1 KiB) per sender, median of %s run(s)"
            % (cfg.get("count", "?"), cfg.get("count_1k", "?"), cfg.get("repeat", "?")),
            "%s cpus, %s" % (cfg.get("nproc", "?"), cfg.get("cpu", "?"))]
    if cfg.get("batch_elements"):
        subs[1] += "; zhost batched: up to %s SENDs per BATCH frame" % cfg["batch_elements"]
    if note:
        subs.append(note)
    s = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" '
         'font-family="DejaVu Sans, Helvetica, Arial, sans-serif">' % (W, H, W, H),
         '<title>zhost-bench throughput</title>',
         '<rect width="100%" height="100%" fill="white"/>',
         '<text x="%d" y="28" font-size="18" font-weight="bold">zhost-bench: throughput '
         '(messages per second, higher is better)</text>' % LEFT,
         ] + ['<text x="%d" y="%d" font-size="12" fill="#444">%s</text>'
              % (LEFT, 48 + 16 * i, escape(line)) for i, line in enumerate(subs)]
    # axis and grid
    t = 0.0
    while t <= top + step / 2:
        yy = y(t)
        s.append('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="%s" stroke-width="1"/>'
                 % (LEFT, yy, W - RIGHT, yy, "#333" if t == 0 else "#ddd"))
        s.append('<text x="%d" y="%.1f" font-size="12" text-anchor="end" fill="#333">%s</text>'
                 % (LEFT - 8, yy + 4, short(t) if t else "0"))
        t += step
    s.append('<text transform="translate(22,%d) rotate(-90)" font-size="13" text-anchor="middle" '
             'fill="#333">msg/s</text>' % (TOP + plot_h // 2))
    group_w = plot_w / len(GROUPS)
    bar_w = group_w * 0.8 / len(SYSTEMS)
    for g, (key, label) in enumerate(GROUPS):
        x0 = LEFT + g * group_w + group_w * 0.1
        for i, (sys_key, name, color) in enumerate(SYSTEMS):
            v = vals[key, sys_key]
            x = x0 + i * bar_w
            cx = x + bar_w / 2
            if v is None:
                s.append('<text x="%.1f" y="%.1f" font-size="11" text-anchor="middle" '
                         'fill="#888">n/a</text>' % (cx, y(0) - 6))
                continue
            s.append('<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s">'
                     '<title>%s %s: %.0f msg/s</title></rect>'
                     % (x + 2, y(v), bar_w - 4, y(0) - y(v), color, escape(name), escape(label), v))
            s.append('<text x="%.1f" y="%.1f" font-size="11" text-anchor="middle" fill="#111">'
                     '%s</text>' % (cx, y(v) - 5, short(v)))
        s.append('<text x="%.1f" y="%d" font-size="14" text-anchor="middle" fill="#111">%s</text>'
                 % (LEFT + g * group_w + group_w / 2, TOP + plot_h + 22, escape(label)))
    # legend
    lx, ly = LEFT, H - 45
    for sys_key, name, color in SYSTEMS:
        s.append('<rect x="%d" y="%d" width="14" height="14" fill="%s"/>' % (lx, ly, color))
        label = "%s (%s)" % (name, sys_key)
        s.append('<text x="%d" y="%d" font-size="13" fill="#111">%s</text>'
                 % (lx + 20, ly + 12, escape(label)))
        lx += 20 + int(len(label) * 7.5) + 24  # 13 px text: at most ~7.5 px a character
    s.append('</svg>')
    return "\n".join(s) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("json", nargs="?", help="zhost-bench --json output (default: stdin)")
    ap.add_argument("-o", "--output", help="the SVG to write (default: stdout)")
    ap.add_argument("--note", help="one more line under the title (where the figures come from)")
    a = ap.parse_args()
    if a.json:
        with open(a.json) as f:
            report = json.load(f)
    else:
        report = json.load(sys.stdin)
    svg = chart(report, a.note)
    if a.output:
        with open(a.output, "w") as f:
            f.write(svg)
    else:
        sys.stdout.write(svg)


if __name__ == "__main__":
    main()
