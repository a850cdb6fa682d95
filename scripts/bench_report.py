#!/usr/bin/env python3
"""Turns one run of `cargo bench --bench layers` into the README's results table
and the per-layer overhead chart.

    cargo bench --bench layers --features otel -- --warm-up-time 1 --measurement-time 3
    python3 scripts/bench_report.py            # prints the Markdown table
    python3 scripts/bench_report.py --svg docs/overhead.svg

Reads criterion's `target/criterion/<group>/<row>/new/estimates.json` (the mean of
the last run of each row). Overhead is a row's time minus its baseline row in the
same group; the ratio is our overhead divided by the peer's. Rows that were not run
are skipped with a note on stderr.
"""

import argparse
import json
import sys
from pathlib import Path

# (label, group directory, baseline row, our row, peer row, peer name, target ratio)
COMPARISONS = [
    ("whole stack", "stack", "bare", "tower_ops", "peer",
     "tower-http + tower_governor + axum-prometheus", 1 / 3),
    ("request id", "request_id", "bare", "tower_ops", "tower_http",
     "tower-http SetRequestId + PropagateRequestId", 0.5),
    ("request log (JSON line)", "log", "bare", "tower_ops_json", "tower_http_trace_json",
     "tower-http TraceLayer + tracing-subscriber JSON", 0.5),
    ("metrics", "metrics", "bare", "tower_ops", "axum_prometheus",
     "axum-prometheus", 0.5),
    ("metrics + exemplars", "metrics", "bare", "tower_ops_exemplars", "axum_prometheus",
     "axum-prometheus", 0.5),
    ("security headers", "security_headers", "bare", "tower_ops", "tower_http",
     "7 tower-http SetResponseHeaderLayers", 0.5),
    ("timeout", "timeout", "bare", "tower_ops", "tower_http",
     "tower-http TimeoutLayer", 0.5),
    ("body limit, GET", "body_limit_get", "bare", "tower_ops", "tower_http",
     "tower-http RequestBodyLimitLayer", 0.5),
    ("body limit, 5-byte POST", "body_limit_post_5_bytes", "bare", "tower_ops", "tower_http",
     "tower-http RequestBodyLimitLayer", 0.5),
    ("body limit around the router, GET", "body_limit_around_get", "bare_around",
     "tower_ops", "tower_http", "tower-http RequestBodyLimitLayer", 0.5),
    ("body limit around the router, POST", "body_limit_around_post_5_bytes",
     "bare_around", "tower_ops", "tower_http", "tower-http RequestBodyLimitLayer", 0.5),
    ("error envelopes, 200 path", "error", "bare", "ours", "peer_catch_panic",
     "tower-http CatchPanicLayer", 0.5),
    ("error envelopes via Router::layer", "error", "bare", "ours_router_layer",
     "peer_router_layer", "tower-http CatchPanicLayer", 0.5),
    ("rate limit, headers off", "rate_limit", "bare", "ours_headers_off", "tower_governor",
     "tower_governor", 0.5),
    ("rate limit, headers on", "rate_limit", "bare", "ours_headers_on", "tower_governor",
     "tower_governor", 1.0),
]


def mean_ns(root: Path, group: str, row: str):
    path = root / group / row / "new" / "estimates.json"
    try:
        return json.loads(path.read_text())["mean"]["point_estimate"]
    except (OSError, KeyError, ValueError):
        return None


def collect(root: Path):
    rows = []
    for label, group, base, ours, peer, peer_name, target in COMPARISONS:
        b, o, p = (mean_ns(root, group, r) for r in (base, ours, peer))
        if None in (b, o, p):
            print(f"skipped {label}: {group}/{{{base},{ours},{peer}}} not all run",
                  file=sys.stderr)
            continue
        ours_over, peer_over = o - b, p - b
        ratio = ours_over / peer_over if peer_over > 0 else float("inf")
        rows.append((label, peer_name, ours_over, peer_over, ratio, target))
    return rows


def table(rows):
    out = ["| layer | peer | tower-ops overhead | peer overhead | ratio | target |",
           "|---|---|---:|---:|---:|---:|"]
    for label, peer_name, o, p, ratio, target in rows:
        if o < 0 or p <= 0:
            shown = "n/a (within noise)"
        else:
            shown = f"{ratio:.2f}" + ("" if ratio <= target else " (missed)")
        out.append(f"| {label} | {peer_name} | {o:,.0f} ns | {p:,.0f} ns | "
                   f"{shown} | {target:.2f} |")
    return "\n".join(out)


def svg(rows):
    """Two horizontal bars per layer: ours and the peer's overhead, to one scale."""
    width, label_w, bar_h, gap, top = 860, 300, 12, 10, 40
    scale_max = max(max(o, p) for _, _, o, p, _, _ in rows) or 1
    plot_w = width - label_w - 90
    height = top + len(rows) * (2 * bar_h + gap) + 20
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        '<text x="10" y="20" font-size="14" font-weight="bold">Added time per request '
        '(ns), lower is better</text>',
        f'<rect x="{label_w}" y="8" width="12" height="12" fill="#2b7bb9"/>'
        f'<text x="{label_w + 16}" y="19">tower-ops</text>',
        f'<rect x="{label_w + 100}" y="8" width="12" height="12" fill="#c8c8c8"/>'
        f'<text x="{label_w + 116}" y="19">peer</text>',
    ]
    y = top
    for label, _, o, p, ratio, _ in rows:
        parts.append(f'<text x="10" y="{y + bar_h + 4}">{escape(label)}</text>')
        for value, colour, dy in ((o, "#2b7bb9", 0), (p, "#c8c8c8", bar_h)):
            w = max(1.0, plot_w * max(value, 0) / scale_max)
            parts.append(f'<rect x="{label_w}" y="{y + dy}" width="{w:.1f}" '
                         f'height="{bar_h - 1}" fill="{colour}"/>')
            parts.append(f'<text x="{label_w + w + 4:.1f}" y="{y + dy + bar_h - 2}">'
                         f'{value:,.0f}</text>')
        parts.append(f'<text x="{width - 10}" y="{y + bar_h + 4}" text-anchor="end">'
                     f'{ratio:.2f}x</text>')
        y += 2 * bar_h + gap
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def escape(text):
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--criterion", default="target/criterion", type=Path,
                        help="criterion's output directory (default: %(default)s)")
    parser.add_argument("--svg", type=Path, help="also write the chart to this file")
    args = parser.parse_args()
    rows = collect(args.criterion)
    if not rows:
        sys.exit(f"no complete comparison under {args.criterion}: run the benches first")
    print(table(rows))
    if args.svg:
        args.svg.parent.mkdir(parents=True, exist_ok=True)
        args.svg.write_text(svg(rows))
        print(f"chart written to {args.svg}", file=sys.stderr)


if __name__ == "__main__":
    main()
