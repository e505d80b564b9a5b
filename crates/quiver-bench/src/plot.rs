//! Recall@10 against queries per second, usearch and Quiver, as an SVG.

use std::fmt::Write;

/// `curve`: per ef, (ef, usearch recall, usearch QPS, Quiver recall, Quiver QPS).
pub fn svg(title: &str, curve: &[(usize, f64, f64, f64, f64)]) -> String {
    let (w, h, left, right, top, bottom) = (760.0, 480.0, 80.0, 30.0, 50.0, 60.0);
    let recalls = curve.iter().flat_map(|c| [c.1, c.3]);
    let qps = curve.iter().flat_map(|c| [c.2, c.4]);
    let x_min = (recalls.clone().fold(1.0, f64::min) * 50.0).floor() / 50.0;
    let x_max = 1.0_f64.max(recalls.fold(0.0, f64::max));
    let y_max = nice(qps.fold(1.0, f64::max) * 1.1);
    let x = |r: f64| left + (r - x_min) / (x_max - x_min).max(1e-9) * (w - left - right);
    let y = |q: f64| h - bottom - q / y_max * (h - top - bottom);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{}" y="24" text-anchor="middle" font-size="15">{title}: recall@10 against queries/s (one thread)</text>
"#,
        w / 2.0
    );
    for i in 0..=5 {
        let q = y_max * f64::from(i) / 5.0;
        let _ = writeln!(
            s,
            r##"<line x1="{left}" x2="{}" y1="{yy:.1}" y2="{yy:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{q:.0}</text>"##,
            w - right,
            left - 6.0,
            y(q) + 4.0,
            yy = y(q)
        );
    }
    let steps = ((x_max - x_min) / 0.02).round().max(1.0) as usize;
    for i in 0..=steps {
        let r = x_min + (x_max - x_min) * i as f64 / steps as f64;
        let _ = writeln!(
            s,
            r##"<line x1="{xx:.1}" x2="{xx:.1}" y1="{top}" y2="{}" stroke="#eee"/><text x="{xx:.1}" y="{}" text-anchor="middle">{r:.2}</text>"##,
            h - bottom,
            h - bottom + 18.0,
            xx = x(r)
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">recall@10</text><text x="18" y="{}" transform="rotate(-90 18 {})" text-anchor="middle">queries/s</text>"#,
        (left + w - right) / 2.0,
        h - 16.0,
        h / 2.0,
        h / 2.0
    );
    let series = [
        ("usearch (Rust crate)", "#d62728", 1usize),
        ("Quiver library", "#1f77b4", 3),
    ];
    for (si, (name, colour, col)) in series.iter().enumerate() {
        let pts: Vec<(f64, f64, usize)> = curve
            .iter()
            .map(|c| {
                let (r, q) = if *col == 1 { (c.1, c.2) } else { (c.3, c.4) };
                (x(r), y(q), c.0)
            })
            .collect();
        let path: Vec<String> = pts
            .iter()
            .map(|p| format!("{:.1},{:.1}", p.0, p.1))
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="2"/>"#,
            path.join(" ")
        );
        for (px, py, ef) in &pts {
            let _ = writeln!(
                s,
                r#"<circle cx="{px:.1}" cy="{py:.1}" r="4" fill="{colour}"/><text x="{:.1}" y="{:.1}" fill="{colour}">ef {ef}</text>"#,
                px + 6.0,
                py + if si == 0 { -6.0 } else { 14.0 }
            );
        }
        let ly = top + 10.0 + 18.0 * si as f64;
        let _ = writeln!(
            s,
            r#"<rect x="{}" y="{}" width="14" height="4" fill="{colour}"/><text x="{}" y="{}">{name}</text>"#,
            w - right - 190.0,
            ly - 2.0,
            w - right - 170.0,
            ly + 3.0
        );
    }
    s.push_str("</svg>\n");
    s
}

/// A round axis maximum at or above `v`.
fn nice(v: f64) -> f64 {
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|&c| c >= v)
        .unwrap_or(10.0 * p)
}
