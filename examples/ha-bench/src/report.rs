//! Measurements: summary statistics, one JSON object per line, and the closing table.

use std::time::Duration;

use serde_json::{json, Value};

/// One reported figure: a named measurement of one system.
#[derive(Clone, Debug)]
pub(crate) struct Measurement {
    pub(crate) backend: String,
    pub(crate) name: String,
    pub(crate) n: usize,
    pub(crate) median: f64,
    pub(crate) p90: f64,
    pub(crate) unit: &'static str,
    /// `(value, what it divides)`, e.g. `(1.4, "ha-rs / raw client")`.
    pub(crate) ratio: Option<(f64, String)>,
    /// Context (TTL subtracted, component count, …), merged into the JSON object.
    pub(crate) extra: Value,
    /// The samples, sorted (for the plot; not printed).
    pub(crate) samples: Vec<f64>,
}

impl Measurement {
    /// Summarises `samples` (at least one).
    pub(crate) fn from_samples(backend: &str, name: &str, unit: &'static str, samples: &[f64]) -> Self {
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        Self {
            backend: backend.to_string(),
            name: name.to_string(),
            n: sorted.len(),
            median: percentile(&sorted, 0.5),
            p90: percentile(&sorted, 0.9),
            unit,
            ratio: None,
            extra: json!({}),
            samples: sorted,
        }
    }

    /// Latencies in milliseconds.
    pub(crate) fn from_durations(backend: &str, name: &str, samples: &[Duration]) -> Self {
        let ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        Self::from_samples(backend, name, "ms", &ms)
    }

    /// Adds the ratio of this median to `other`'s median.
    pub(crate) fn with_ratio_to(mut self, other: &Measurement, label: &str) -> Self {
        if other.median != 0.0 {
            self.ratio = Some((self.median / other.median, label.to_string()));
        }
        self
    }

    /// Adds a context field.
    pub(crate) fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        if let Value::Object(map) = &mut self.extra {
            map.insert(key.to_string(), value.into());
        }
        self
    }

    /// The JSON object.
    pub(crate) fn to_json(&self) -> Value {
        let mut v = json!({
            "backend": self.backend,
            "name": self.name,
            "n": self.n,
            "median": round(self.median),
            "p90": round(self.p90),
            "unit": self.unit,
        });
        if let (Value::Object(map), Some((ratio, of))) = (&mut v, &self.ratio) {
            map.insert("ratio".into(), json!(round(*ratio)));
            map.insert("ratio_of".into(), json!(of));
        }
        if let (Value::Object(map), Value::Object(extra)) = (&mut v, &self.extra) {
            map.extend(extra.clone());
        }
        v
    }
}

/// Nearest-rank percentile of sorted samples (`NaN` when empty).
fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Four significant digits (sub-microsecond latencies stay visible in ms).
fn round(x: f64) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let scale = 10f64.powi(3 - x.abs().log10().floor() as i32);
    (x * scale).round() / scale
}

/// Collects measurements and prints each as one JSON line as it arrives.
#[derive(Default)]
pub(crate) struct Report {
    rows: Vec<Measurement>,
}

impl Report {
    pub(crate) fn push(&mut self, m: Measurement) {
        println!("{}", m.to_json());
        self.rows.push(m);
    }

    /// Reports a measurement that could not be taken, so that the output says so.
    pub(crate) fn failed(&mut self, backend: &str, name: &str, error: &str) {
        eprintln!("ha-bench: {backend} {name} failed: {error}");
        println!("{}", json!({"backend": backend, "name": name, "error": error}));
    }

    /// Every measurement reported so far.
    pub(crate) fn rows(&self) -> &[Measurement] {
        &self.rows
    }

    /// The short human table.
    pub(crate) fn print_table(&self) {
        println!();
        println!(
            "{:<27} {:<34} {:>5} {:>11} {:>11} {:<9} ratio",
            "backend", "measurement", "n", "median", "p90", "unit"
        );
        for m in &self.rows {
            let ratio = m
                .ratio
                .as_ref()
                .map(|(r, of)| format!("{r:.2} ({of})"))
                .unwrap_or_default();
            println!(
                "{:<27} {:<34} {:>5} {:>11} {:>11} {:<9} {ratio}",
                m.backend,
                m.name,
                m.n,
                round(m.median),
                round(m.p90),
                m.unit
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn nearest_rank_percentiles() {
        let s: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(percentile(&s, 0.5), 5.0);
        assert_eq!(percentile(&s, 0.9), 9.0);
        assert_eq!(percentile(&[3.0], 0.9), 3.0);
    }

    #[test]
    fn rounds_to_four_significant_digits() {
        assert_eq!(super::round(0.000_123_45), 0.000_123_5);
        assert_eq!(super::round(1391.26), 1391.0);
        assert_eq!(super::round(-99.171), -99.17);
    }
}
