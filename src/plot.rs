//! Pictures of an estimate: a per-layer roofline plot and a per-layer stacked energy chart,
//! each as SVG and PNG (`systole estimate --plot DIR`), and the sweep's Pareto plot.
//!
//! plotters draws both formats from one chart definition; its `ab_glyph` text renderer reads
//! the DejaVu Sans font embedded from assets/fonts (Bitstream Vera licence), so PNG text needs
//! no fontconfig or system fonts.

use anyhow::{anyhow, Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;
use systole_arch::image::write_atomic;

use crate::estimate::Estimate;

const SIZE: (u32, u32) = (1000, 640);

fn fonts() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let bytes: &'static [u8] = include_bytes!("../assets/fonts/DejaVuSans.ttf");
        if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_err() {
            // The embedded font is fixed at build time; a test renders text with it.
            unreachable!("the embedded DejaVu Sans does not parse");
        }
    });
}

fn err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow!("plot: {e}")
}

/// Renders `chart` (generic over the backend) to an SVG string and a PNG file under `dir`.
macro_rules! render {
    ($dir:expr, $name:expr, $chart:ident, $($arg:expr),*) => {{
        let dir: &Path = $dir;
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create plot folder {}", dir.display()))?;
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
            $chart(&root, $($arg),*)?;
            root.present().map_err(err)?;
        }
        let png = dir.join(format!("{}.png", $name));
        let tmp = dir.join(format!(".{}.tmp.png", $name));
        let drawn = (|| -> Result<()> {
            let root = BitMapBackend::new(&tmp, SIZE).into_drawing_area();
            $chart(&root, $($arg),*)?;
            root.present().map_err(err)?;
            Ok(())
        })();
        if let Err(e) = drawn {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        let svg_path = dir.join(format!("{}.svg", $name));
        write_atomic(&svg_path, svg.as_bytes())
            .with_context(|| format!("cannot write {}", svg_path.display()))?;
        std::fs::rename(&tmp, &png).with_context(|| format!("cannot write {}", png.display()))?;
    }};
}

/// `roofline.{svg,png}` and `energy.{svg,png}` for an estimate.
pub fn estimate_plots(e: &Estimate, dir: &Path) -> Result<()> {
    if e.layers.is_empty() {
        anyhow::bail!("nothing to plot: the estimate has no layers");
    }
    fonts();
    render!(dir, "roofline", roofline, e);
    render!(dir, "energy", energy, e);
    Ok(())
}

fn short(name: &str, n: usize) -> String {
    if name.chars().count() <= n {
        name.to_string()
    } else {
        let t: String = name.chars().take(n - 1).collect();
        format!("{t}~")
    }
}

/// Achieved MAC/cycle against operational intensity (MACs per DRAM byte), log-log, under the
/// compute roof (rows x cols) and the DRAM roof (bytes per cycle x intensity).
fn roofline<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, e: &Estimate) -> Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(err)?;
    let peak = e.peak_macs_per_cycle as f64;
    let bw = e.dram_bytes_per_cycle as f64;
    let pts: Vec<(f64, f64)> = e
        .layers
        .iter()
        .map(|l| {
            (
                l.intensity().max(1e-3),
                (l.macs as f64 / l.cycles.max(1) as f64).max(1e-3),
            )
        })
        .collect();
    let xmin = pts
        .iter()
        .map(|p| p.0)
        .fold(f64::MAX, f64::min)
        .min(peak / bw)
        / 4.0;
    let xmax = pts.iter().map(|p| p.0).fold(0.0, f64::max).max(peak / bw) * 4.0;
    let ymin = pts.iter().map(|p| p.1).fold(f64::MAX, f64::min).min(peak) / 4.0;
    let ymax = peak * 2.0;
    let mut chart = ChartBuilder::on(root)
        .caption(
            format!(
                "Roofline: {} on {} ({} MAC/cycle, {} B/cycle DRAM, {:?})",
                short(&e.model, 40),
                e.arch,
                e.peak_macs_per_cycle,
                e.dram_bytes_per_cycle,
                e.engine
            ),
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d((xmin..xmax).log_scale(), (ymin..ymax).log_scale())
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("operational intensity (MACs per DRAM byte)")
        .y_desc("achieved MACs per cycle")
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(err)?;
    // The roofs: min(peak, bw * x).
    let ridge = peak / bw;
    chart
        .draw_series(LineSeries::new(
            vec![(xmin, bw * xmin), (ridge, peak), (xmax, peak)],
            RED.stroke_width(2),
        ))
        .map_err(err)?
        .label(format!(
            "roofs: compute {peak} MAC/cycle, DRAM {bw} B/cycle (ridge {ridge:.2} MAC/B)"
        ))
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED.stroke_width(2)));
    chart
        .draw_series(
            pts.iter()
                .map(|&p| Circle::new(p, 5, BLUE.mix(0.7).filled())),
        )
        .map_err(err)?
        .label("layers (number = position in the model)")
        .legend(|(x, y)| Circle::new((x + 10, y), 5, BLUE.filled()));
    chart
        .draw_series(pts.iter().enumerate().map(|(i, &p)| {
            Text::new(
                format!("{i}"),
                p,
                ("sans-serif", 13).into_font().color(&BLACK),
            )
        }))
        .map_err(err)?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font(("sans-serif", 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    Ok(())
}

/// Component names and colours of the energy chart, in stacking order.
const PARTS: [(&str, RGBColor); 9] = [
    ("MAC", RGBColor(31, 119, 180)),
    ("PPU", RGBColor(255, 127, 14)),
    ("input buf", RGBColor(44, 160, 44)),
    ("weight buf", RGBColor(214, 39, 40)),
    ("acc buf", RGBColor(148, 103, 189)),
    ("output buf", RGBColor(140, 86, 75)),
    ("DRAM", RGBColor(127, 127, 127)),
    ("control", RGBColor(188, 189, 34)),
    ("static", RGBColor(23, 190, 207)),
];

fn parts(en: &systole_emulator::stats::Energy) -> [f64; 9] {
    [
        en.mac_pj,
        en.ppu_pj,
        en.input_buffer_pj,
        en.weight_buffer_pj,
        en.accumulator_buffer_pj,
        en.output_buffer_pj,
        en.dram_pj,
        en.control_pj,
        en.static_pj,
    ]
    .map(|pj| pj / 1e3)
}

/// Stacked per-layer energy by component, in nJ.
fn energy<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, e: &Estimate) -> Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(err)?;
    let n = e.layers.len();
    let ymax = e
        .layers
        .iter()
        .map(|l| l.energy.total_pj / 1e3)
        .fold(0.0, f64::max)
        .max(1e-6)
        * 1.15;
    let names: Vec<String> = e.layers.iter().map(|l| short(&l.name, 14)).collect();
    let mut chart = ChartBuilder::on(root)
        .caption(
            format!(
                "Energy per layer: {} on {} at {} nm, total {:.2} nJ",
                short(&e.model, 40),
                e.arch,
                e.node_nm,
                e.total.energy.total_pj / 1e3
            ),
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(60)
        .y_label_area_size(70)
        .build_cartesian_2d((0..n - 1).into_segmented(), 0f64..ymax)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n.min(40))
        .x_label_formatter(&|x| match x {
            SegmentValue::CenterOf(i) => names.get(*i).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .x_desc("layer")
        .y_desc("energy (nJ)")
        .label_style(("sans-serif", 12))
        .draw()
        .map_err(err)?;
    for (j, (label, colour)) in PARTS.iter().enumerate() {
        let rects: Vec<Rectangle<(SegmentValue<usize>, f64)>> = e
            .layers
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let p = parts(&l.energy);
                let lo: f64 = p[..j].iter().sum();
                let mut r = Rectangle::new(
                    [
                        (SegmentValue::Exact(i), lo),
                        (SegmentValue::Exact(i + 1), lo + p[j]),
                    ],
                    colour.filled(),
                );
                r.set_margin(0, 0, 6, 6);
                r
            })
            .collect();
        let c = *colour;
        chart
            .draw_series(rects)
            .map_err(err)?
            .label(*label)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], c.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font(("sans-serif", 13))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    Ok(())
}

/// `pareto.{svg,png}`: latency against energy of every feasible point, marker area in
/// proportion to its LUTs, the Pareto-optimal points (latency, energy, LUTs) in red and
/// labelled rows x cols.
pub fn sweep_plots(rows: &[crate::sweep::Row], title: &str, dir: &Path) -> Result<()> {
    let ok: Vec<&crate::sweep::Row> = rows.iter().filter(|r| r.status == "ok").collect();
    if ok.is_empty() {
        anyhow::bail!("nothing to plot: no feasible design point");
    }
    fonts();
    render!(dir, "pareto", pareto, &ok, title);
    Ok(())
}

fn pareto<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    rows: &[&crate::sweep::Row],
    title: &str,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(err)?;
    let lat = |r: &crate::sweep::Row| r.latency_us.max(1e-6);
    let en = |r: &crate::sweep::Row| r.energy_nj.max(1e-6);
    let (x0, x1) = rows.iter().fold((f64::MAX, 0.0f64), |(a, b), r| {
        (a.min(lat(r)), b.max(lat(r)))
    });
    let (y0, y1) = rows
        .iter()
        .fold((f64::MAX, 0.0f64), |(a, b), r| (a.min(en(r)), b.max(en(r))));
    let amax = rows.iter().map(|r| r.area.luts).fold(1.0, f64::max);
    let mut chart = ChartBuilder::on(root)
        .caption(
            format!("Design space: {} (marker area ~ LUTs)", short(title, 50)),
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(80)
        .build_cartesian_2d(
            (x0 / 1.5..x1 * 1.5).log_scale(),
            (y0 / 1.5..y1 * 1.5).log_scale(),
        )
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("latency (us)")
        .y_desc("energy (nJ)")
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(err)?;
    let size = |r: &crate::sweep::Row| (4.0 + 16.0 * (r.area.luts / amax).sqrt()) as i32;
    chart
        .draw_series(
            rows.iter()
                .filter(|r| !r.pareto)
                .map(|r| Circle::new((lat(r), en(r)), size(r), BLUE.mix(0.35).filled())),
        )
        .map_err(err)?
        .label("design point")
        .legend(|(x, y)| Circle::new((x + 10, y), 5, BLUE.mix(0.35).filled()));
    let mut front: Vec<&&crate::sweep::Row> = rows.iter().filter(|r| r.pareto).collect();
    front.sort_by(|a, b| lat(a).total_cmp(&lat(b)));
    chart
        .draw_series(
            front
                .iter()
                .map(|r| Circle::new((lat(r), en(r)), size(r), RED.mix(0.6).filled())),
        )
        .map_err(err)?
        .label("Pareto-optimal (latency, energy, LUTs)")
        .legend(|(x, y)| Circle::new((x + 10, y), 5, RED.mix(0.6).filled()));
    chart
        .draw_series(front.iter().map(|r| {
            Text::new(
                format!(
                    "{}x{}{}",
                    r.point.rows,
                    r.point.cols,
                    if r.point.precision == crate::sweep::Precision::Xnor {
                        " xnor"
                    } else {
                        ""
                    }
                ),
                (lat(r), en(r)),
                ("sans-serif", 13).into_font().color(&BLACK),
            )
        }))
        .map_err(err)?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font(("sans-serif", 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    Ok(())
}
