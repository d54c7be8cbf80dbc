// Reading Prometheus histograms in the browser (the console's overview). No DOM: testable in Node.

// Cumulative bucket counts of a histogram, summed over its other labels: [[le, count], ...] by le.
export function buckets(values, name) {
  const byLe = new Map();
  for (const [k, v] of values) {
    if (!k.startsWith(`${name}_bucket{`)) continue;
    const le = (k.match(/le="([^"]*)"/) || [])[1];
    if (le !== undefined) byLe.set(le, (byLe.get(le) || 0) + v);
  }
  return [...byLe].map(([le, n]) => [le === "+Inf" ? Infinity : Number(le), n]).sort((a, b) => a[0] - b[0]);
}

// The q-quantile of the observations between two scrapes' buckets (Prometheus' histogram_quantile:
// linear within the bucket it falls in); null with none.
export function quantile(q, before, after) {
  const counts = after.map(([le, n], i) => [le, n - ((before[i] || [le, 0])[1] || 0)]);
  const total = counts.length ? counts[counts.length - 1][1] : 0;
  if (total <= 0) return null;
  const rank = q * total;
  let lower = 0, below = 0;
  for (const [le, n] of counts) {
    if (n >= rank) {
      if (le === Infinity) return lower;
      return lower + (le - lower) * ((rank - below) / Math.max(1e-12, n - below));
    }
    lower = le; below = n;
  }
  return lower;
}

