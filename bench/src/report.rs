//! Medians over runs, printed as "ours / baseline / ratio / target".

use hdrhistogram::Histogram;

#[derive(Debug, Clone, Copy)]
pub enum Target {
    AtLeast(f64),
    AtMost(f64),
}

pub struct Figure {
    pub label: String,
    pub unit: &'static str,
    pub ours: Vec<f64>,
    pub baseline: Vec<f64>,
    pub target: Option<Target>,
}

pub struct Report {
    pub title: String,
    /// What "ours" and "baseline" are, printed under the table.
    pub notes: Vec<String>,
    pub figures: Vec<Figure>,
}

impl Report {
    pub fn new(title: impl Into<String>) -> Self {
        Self {
            title: title.into(),
            notes: Vec::new(),
            figures: Vec::new(),
        }
    }

    /// Adds one run's values to the figure `label`, creating it on first use.
    pub fn add(
        &mut self,
        label: &str,
        unit: &'static str,
        ours: f64,
        baseline: f64,
        target: Option<Target>,
    ) {
        match self.figures.iter_mut().find(|f| f.label == label) {
            Some(figure) => {
                figure.ours.push(ours);
                figure.baseline.push(baseline);
            }
            None => self.figures.push(Figure {
                label: label.to_owned(),
                unit,
                ours: vec![ours],
                baseline: vec![baseline],
                target,
            }),
        }
    }

    pub fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    pub fn print(&self) {
        let runs = self.figures.first().map_or(0, |f| f.ours.len());
        println!();
        println!("== {} (median of {runs} run(s)) ==", self.title);
        println!(
            "{:<40} {:>12} {:>12} {:>7}   target",
            "figure", "ours", "baseline", "ratio"
        );
        for f in &self.figures {
            let ours = median(&f.ours);
            let base = median(&f.baseline);
            let ratio = if base > 0.0 {
                format!("{:.2}", ours / base)
            } else {
                "-".to_owned()
            };
            let target = match f.target {
                None => String::new(),
                Some(Target::AtLeast(t)) => format!(
                    ">= {} {}",
                    number(t),
                    if ours >= t { "met" } else { "MISSED" }
                ),
                Some(Target::AtMost(t)) => format!(
                    "<= {} {}",
                    number(t),
                    if ours <= t { "met" } else { "MISSED" }
                ),
            };
            println!(
                "{:<40} {:>12} {:>12} {:>7}   {}",
                format!("{} ({})", f.label, f.unit),
                number(ours),
                number(base),
                ratio,
                target
            );
            if f.ours.len() > 1 {
                println!(
                    "{:<40} {:>12} {:>12}",
                    "  runs",
                    f.ours
                        .iter()
                        .map(|v| number(*v))
                        .collect::<Vec<_>>()
                        .join("/"),
                    f.baseline
                        .iter()
                        .map(|v| number(*v))
                        .collect::<Vec<_>>()
                        .join("/")
                );
            }
        }
        for note in &self.notes {
            println!("  - {note}");
        }
    }
}

pub fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    }
}

/// Large values with thousands separators, small ones (latencies in ms)
/// with three decimals.
pub fn number(v: f64) -> String {
    if !v.is_finite() {
        return "-".into();
    }
    if v.abs() < 100.0 {
        return format!("{v:.3}");
    }
    let digits = format!("{:.0}", v.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if v < 0.0 { format!("-{out}") } else { out }
}

/// Latency histogram in microseconds, 1 µs .. 60 s.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// The quantile `q` of a microsecond histogram, in milliseconds.
pub fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}
