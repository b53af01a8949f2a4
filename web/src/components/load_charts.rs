//! Live charts of the load: throughput (calls/s) above latency (p50 and p99, log scale), on one
//! time axis (the events' own clock), with every crash, fault-plan change, role change and reset
//! as a labelled vertical line across both, so the latency spike when the primary dies, and how
//! long it lasts, can be read off. Our own SVG: a polyline per series over the last minute of
//! the ring (`load.rs`), round ticks, a hover readout.
//!
//! It reads the load slice alone, which changes about four times a second under load (each
//! `load_stats`) and on a marker event, so it is not rendered again for every batch of events.

use wasm_bindgen::closure::Closure;
use wasm_bindgen::JsCast;
use web_sys::Element;
use yew::prelude::*;

use super::use_load;
use crate::format;
use crate::load::{self, Frame, Point};

const LEFT: f64 = 50.0;
const RIGHT: f64 = 14.0;
/// Below this window height the charts are shorter, so the diagram keeps its room.
const SHORT_WINDOW: f64 = 900.0;
/// The room a marker's label takes, in px: [`load::LABEL_CHARS`] characters of the 10 px font.
const LABEL_PX: f64 = 115.0;
/// The strip at the top of each plot that holds its title: the data stay below it, so no line
/// ever runs through a title (a halo could not keep a busy line legible).
const TITLE_BAND: f64 = 11.0;

/// The charts' vertical sizes: the band above the plots where marker labels go (three rows,
/// two when short), each plot, the gap between them; and the whole SVG.
struct Dims {
    labels: f64,
    plot_h: f64,
    gap: f64,
    rows: usize,
}

impl Dims {
    fn of(short: bool) -> Dims {
        if short {
            Dims {
                labels: 24.0,
                plot_h: 44.0,
                gap: 12.0,
                rows: 2,
            }
        } else {
            Dims {
                labels: 34.0,
                plot_h: 62.0,
                gap: 14.0,
                rows: 3,
            }
        }
    }

    fn height(&self) -> f64 {
        self.labels + 2.0 * self.plot_h + self.gap + 20.0
    }
}

fn time_label(t_us: u64) -> String {
    let s = t_us / 1_000_000;
    if s >= 60 {
        format!("{}:{:02}", s / 60, s % 60)
    } else {
        format!("{s} s")
    }
}

#[function_component(LoadCharts)]
pub fn load_charts() -> Html {
    let load = use_load();
    let wrap = use_node_ref();
    let width = use_state(|| 900.0f64);
    let short = use_state(|| false);
    let hover = use_state(|| None::<u64>);
    let has_data = !load.charts.is_empty();
    {
        let wrap = wrap.clone();
        let width = width.clone();
        let short = short.clone();
        use_effect_with(has_data, move |_| {
            let measure = {
                let wrap = wrap.clone();
                move || {
                    if let Some(el) = wrap.cast::<Element>() {
                        let w = el.client_width() as f64;
                        if w > 0.0 && (w - *width).abs() >= 1.0 {
                            width.set(w);
                        }
                        let h = web_sys::window()
                            .and_then(|w| w.inner_height().ok())
                            .and_then(|h| h.as_f64())
                            .unwrap_or(1000.0);
                        if (h < SHORT_WINDOW) != *short {
                            short.set(h < SHORT_WINDOW);
                        }
                    }
                }
            };
            measure();
            let cb = Closure::<dyn FnMut()>::new(measure);
            let observer = web_sys::ResizeObserver::new(cb.as_ref().unchecked_ref()).ok();
            if let (Some(o), Some(el)) = (&observer, wrap.cast::<Element>()) {
                o.observe(&el);
            }
            move || {
                if let Some(o) = observer {
                    o.disconnect();
                }
                drop(cb);
            }
        });
    }
    if !has_data {
        return html! {};
    }
    let charts = &load.charts;
    let Some((t0, t1)) = load::window(&charts.points) else {
        return html! {};
    };
    let w = (*width).max(300.0);
    let d = Dims::of(*short);
    let (labels, plot_h, gap, height) = (d.labels, d.plot_h, d.gap, d.height());
    let plot_w = w - LEFT - RIGHT;
    let top1 = labels;
    let top2 = labels + plot_h + gap;
    let f1 = Frame {
        left: LEFT,
        top: top1,
        width: plot_w,
        height: plot_h,
        t0,
        t1,
    };
    let f2 = Frame { top: top2, ..f1 };
    let in_window = || {
        charts
            .points
            .iter()
            .filter(|p| p.t_us >= t0 && p.t_us <= t1)
    };

    // Throughput: linear from 0.
    let max_ops = in_window().map(|p| p.ops_per_s).max().unwrap_or(0) as f64;
    let (top_ops, ops_ticks) = load::linear_ticks(max_ops * 1.05);
    let data_h = plot_h - TITLE_BAND;
    let y_ops = |v: f64| top1 + plot_h - v / top_ops * data_h;
    let ops_lines = load::polylines(&charts.points, &f1, |p| Some(y_ops(p.ops_per_s as f64)));
    // The area under the throughput line, for weight.
    let ops_area: Vec<String> = ops_lines
        .iter()
        .map(|l| {
            let first_x = l.split(',').next().unwrap_or("0");
            let last_x = l
                .rsplit(' ')
                .next()
                .and_then(|p| p.split(',').next())
                .unwrap_or("0");
            let base = top1 + plot_h;
            format!("{first_x},{base} {l} {last_x},{base}")
        })
        .collect();

    // Latency: log scale over whole decades.
    // A window in which no call was answered has no latency (0 on the wire): not a point.
    let lo = in_window()
        .map(|p| p.p50_us)
        .filter(|v| *v > 0)
        .min()
        .unwrap_or(100);
    let hi = in_window().map(|p| p.p99_us).max().unwrap_or(1000);
    let (d_lo, d_hi) = load::log_decades(lo, hi);
    let y_lat = |us: u64| {
        let v = (us.max(1) as f64).log10().clamp(d_lo as f64, d_hi as f64);
        top2 + plot_h - (v - d_lo as f64) / (d_hi - d_lo) as f64 * data_h
    };
    let lat_every = if data_h / f64::from((d_hi - d_lo).max(1)) < 13.0 {
        2
    } else {
        1
    };
    let p50_lines = load::polylines(&charts.points, &f2, |p| {
        (p.p50_us > 0).then(|| y_lat(p.p50_us))
    });
    let p99_lines = load::polylines(&charts.points, &f2, |p| {
        (p.p99_us > 0).then(|| y_lat(p.p99_us))
    });

    // Markers in the window, labels spread over three rows.
    let markers: Vec<&load::Marker> = charts
        .markers
        .iter()
        .filter(|m| m.t_us >= t0 && m.t_us <= t1)
        .collect();
    let xs: Vec<f64> = markers.iter().map(|m| f1.x(m.t_us)).collect();
    let priority: Vec<u8> = markers.iter().map(|m| m.kind.priority()).collect();
    // A label runs right of its line, or left of it near the right edge (as drawn below).
    let spans: Vec<(f64, f64)> = xs
        .iter()
        .map(|x| {
            if *x > LEFT + plot_w - 110.0 {
                (x - LABEL_PX, *x)
            } else {
                (*x, x + LABEL_PX)
            }
        })
        .collect();
    let rows = load::label_rows(&spans, &priority, d.rows);
    let bottom = top2 + plot_h;

    let readout: Option<Point> = hover.and_then(|t| load::nearest(&charts.points, t).copied());
    // Not hovering: the newest window in which calls were answered (the last window after a
    // stop often has none, and would read "p50 0 µs").
    let shown = readout.or_else(|| {
        charts
            .points
            .iter()
            .rev()
            .find(|p| p.calls > p.failed)
            .copied()
    });
    // Stopped, the charts keep the last load's minute; the title says whose.
    let hint = if load.settings.is_some() {
        "last minute · the events' clock"
    } else {
        "the last load (stopped) · the events' clock"
    };
    let onmousemove = {
        let hover = hover.clone();
        Callback::from(move |e: MouseEvent| {
            let x = e.offset_x() as f64;
            hover.set((x >= f1.left && x <= f1.left + f1.width).then(|| f1.t_at(x)));
        })
    };
    let onmouseleave = {
        let hover = hover.clone();
        Callback::from(move |_| hover.set(None))
    };
    // The readout by keyboard: the charts take focus; arrows step through the points, Escape
    // (or leaving) ends it.
    let onkeydown = {
        let hover = hover.clone();
        let points = charts.points.clone();
        Callback::from(move |e: KeyboardEvent| {
            let back = match e.key().as_str() {
                "ArrowLeft" => true,
                "ArrowRight" => false,
                "Escape" => {
                    hover.set(None);
                    return;
                }
                _ => return,
            };
            e.prevent_default();
            if let Some(t) = load::step_point(&points, *hover, back) {
                hover.set(Some(t));
            }
        })
    };
    let onblur = {
        let hover = hover.clone();
        Callback::from(move |_: FocusEvent| hover.set(None))
    };
    let total = format!(
        "{} calls answered, {} given up",
        format::count(charts.calls.saturating_sub(charts.failed)),
        format::count(charts.failed)
    );

    html! {
        <section class="chart-card" aria-labelledby="charts-title" data-testid="load-charts">
            <div class="chart-head">
                <h2 class="panel-title" id="charts-title">{"Load"}<span class="hint">{hint}</span></h2>
                <span class="chart-legend" aria-hidden="true">
                    <span class="sw ops"></span>{"calls/s"}
                    <span class="sw p50"></span>{"p50"}
                    <span class="sw p99"></span>{"p99"}
                </span>
                <span class={classes!("chart-readout", readout.is_some().then_some("hover"))} data-testid="chart-readout" title={total}>
                    {match shown {
                        Some(p) => html! {
                            <>
                                <span class="mono">{format::clock(p.t_us)}</span>
                                <b>{format!("{} calls/s", format::count(p.ops_per_s))}</b>
                                <span>{format!("p50 {}", format::duration(p.p50_us))}</span>
                                <span class="p99">{format!("p99 {}", format::duration(p.p99_us))}</span>
                                if p.failed > 0 {
                                    <span class="bad">{format!("{} gave up", format::count(p.failed))}</span>
                                }
                            </>
                        },
                        None => html! {},
                    }}
                </span>
            </div>
            <div class="chart-wrap" ref={wrap}>
                <svg class="chart" width={w.to_string()} height={height.to_string()} viewBox={format!("0 0 {w} {height}")}
                    role="img" aria-label={format!("Throughput and latency of the load over the last minute; {} markers; left and right arrows read the points", markers.len())}
                    {onmousemove} {onmouseleave} {onkeydown} {onblur} tabindex="0"
                    data-points={charts.points.len().to_string()}>
                    // Grid and y axes.
                    { for ops_ticks.iter().map(|v| { let y = y_ops(*v); html! {
                        <g class="tick">
                            <line class="grid" x1={LEFT.to_string()} x2={(LEFT + plot_w).to_string()} y1={y.to_string()} y2={y.to_string()} />
                            <text class="y-label" x={(LEFT - 6.0).to_string()} y={(y + 3.5).to_string()}>{load::rate_label(*v)}</text>
                        </g>
                    }}) }
                    { for (d_lo..=d_hi).map(|d| { let y = y_lat(10u64.pow(d)); html! {
                        <g class="tick">
                            <line class="grid" x1={LEFT.to_string()} x2={(LEFT + plot_w).to_string()} y1={y.to_string()} y2={y.to_string()} />
                            // Labels at least 13 px apart: every other decade when many.
                            if (d - d_lo) % lat_every == 0 {
                                <text class="y-label" x={(LEFT - 6.0).to_string()} y={(y + 3.5).to_string()}>{load::decade_label(d)}</text>
                            }
                        </g>
                    }}) }
                    // Time axis.
                    { for load::time_ticks(t0, t1).into_iter().map(|t| { let x = f1.x(t); html! {
                        <g class="tick">
                            <line class="grid time" x1={x.to_string()} x2={x.to_string()} y1={top1.to_string()} y2={bottom.to_string()} />
                            <text class="x-label" x={x.to_string()} y={(bottom + 14.0).to_string()}>{time_label(t)}</text>
                        </g>
                    }}) }
                    // Series.
                    { for ops_area.iter().map(|a| html! { <polygon class="area ops" points={a.clone()} /> }) }
                    { for ops_lines.iter().map(|l| html! { <polyline class="line ops" points={l.clone()} /> }) }
                    { for p99_lines.iter().map(|l| html! { <polyline class="line p99" points={l.clone()} /> }) }
                    { for p50_lines.iter().map(|l| html! { <polyline class="line p50" points={l.clone()} /> }) }
                    // Markers across both plots.
                    { for markers.iter().zip(xs.iter().zip(rows.iter())).map(|(m, (x, row))| {
                        // A label without a free row is left out; the line and its tooltip stay.
                        let label_y = 10.0 + row.unwrap_or(d.rows.saturating_sub(1)) as f64 * 11.0;
                        let anchor_end = *x > LEFT + plot_w - 110.0;
                        html! {
                            <g class={classes!("marker", m.kind.class())} data-testid="chart-marker" data-kind={m.kind.class()}>
                                <title>{format!("{} at {}", m.detail, format::clock(m.t_us))}</title>
                                <line x1={x.to_string()} x2={x.to_string()} y1={(label_y + 2.0).to_string()} y2={bottom.to_string()} />
                                if row.is_some() {
                                    <text x={(if anchor_end { x - 3.0 } else { x + 3.0 }).to_string()} y={label_y.to_string()}
                                        text-anchor={if anchor_end { "end" } else { "start" }}>{m.label.clone()}</text>
                                }
                            </g>
                        }
                    }) }
                    // The plots' titles, each in the band above its data, drawn after the
                    // markers so their halo keeps a marker line from striking them out.
                    <text class="axis-title" x={(LEFT + 5.0).to_string()} y={(top1 + 8.0).to_string()}>{"throughput · calls/s"}</text>
                    <text class="axis-title" x={(LEFT + 5.0).to_string()} y={(top2 + 8.0).to_string()}>{"latency · p50, p99"}</text>
                    if let Some(p) = readout {
                        <line class="hover-line" x1={f1.x(p.t_us).to_string()} x2={f1.x(p.t_us).to_string()}
                            y1={top1.to_string()} y2={bottom.to_string()} />
                        <circle class="dot ops" cx={f1.x(p.t_us).to_string()} cy={y_ops(p.ops_per_s as f64).to_string()} r="3" />
                        <circle class="dot p99" cx={f1.x(p.t_us).to_string()} cy={y_lat(p.p99_us).to_string()} r="3" />
                        <circle class="dot p50" cx={f1.x(p.t_us).to_string()} cy={y_lat(p.p50_us).to_string()} r="3" />
                    }
                </svg>
            </div>
        </section>
    }
}
