/**
 * Counters and histograms cheap enough for the engine's hot path (metrics.ts), shown through a
 * prom-client registry. prom-client's own counters and histograms hash the label values of every
 * call, even on a child bound with `labels(…)`, and allocate for it; here a series is bound once
 * per label values and then updated with plain arithmetic (a counter: `value += 1`; a histogram: a
 * bucket count, the sum and the count). The registry asks a family for its values only when
 * /metrics is scraped (`get()`, prom-client's metric interface), and formats them as it formats its
 * own metrics: the text is the same as prom-client's Counter and Histogram would give.
 *
 * Series are created on first use and kept: their number is bounded by the label values, which
 * are workflow and activity types and statuses (code), never ids.
 */
import type { Metric, Registry } from "prom-client";

type Labels = Record<string, string>;

/** One sample line, as prom-client's registry takes it. */
interface Sample {
  value: number;
  labels: Record<string, string | number>;
  metricName?: string;
}

/** What the registry asks of a metric at scrape time (prom-client's `get()`; `reset()` for registry.resetMetrics()). */
interface Family {
  readonly name: string;
  readonly help: string;
  readonly type: "counter" | "histogram";
  readonly aggregator: "sum";
  get(): Promise<{ name: string; help: string; type: string; aggregator: "sum"; values: Sample[] }>;
  reset(): void;
}

function labelsOf(names: readonly string[], values: readonly string[]): Labels {
  if (values.length !== names.length) throw new Error(`metric labels ${names.join(", ")} want ${names.length} value(s), got ${values.length}`);
  const labels: Labels = {};
  names.forEach((name, i) => (labels[name] = values[i]!));
  return labels;
}

function register(registry: Registry, family: Family): void {
  // prom-client's registry takes any object with its metric interface (name, get(), reset()); its
  // types only name its own classes.
  registry.registerMetric(family as unknown as Metric);
}

/** Series by label values, registered with the registry, which reads them at scrape (get()). */
abstract class SeriesFamily<S extends { readonly labels: Labels; reset(): void }> implements Family {
  abstract readonly type: "counter" | "histogram";
  readonly aggregator = "sum" as const;
  private readonly series = new Map<string, S>();
  constructor(
    registry: Registry,
    readonly name: string,
    readonly help: string,
    private readonly labelNames: readonly string[],
  ) {
    register(registry, this);
  }
  /** The series of these label values (in labelNames' order), created empty on first use. Bind it once and keep it. */
  of(...values: string[]): S {
    const key = values.join("\u0000");
    let s = this.series.get(key);
    if (!s) this.series.set(key, (s = this.create(labelsOf(this.labelNames, values))));
    return s;
  }
  protected abstract create(labels: Labels): S;
  /** One series' sample lines, as prom-client's own metric of this type shows them. */
  protected abstract samples(series: S, into: Sample[]): void;
  async get() {
    const values: Sample[] = [];
    for (const s of this.series.values()) this.samples(s, values);
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }
  reset(): void {
    for (const s of this.series.values()) s.reset();
  }
}

export class CounterSeries {
  value = 0;
  constructor(readonly labels: Labels) {}
  inc(by = 1): void {
    this.value += by;
  }
  reset(): void {
    this.value = 0;
  }
}

export class CounterFamily extends SeriesFamily<CounterSeries> {
  readonly type = "counter" as const;
  protected create(labels: Labels): CounterSeries {
    return new CounterSeries(labels);
  }
  protected samples(s: CounterSeries, into: Sample[]): void {
    into.push({ value: s.value, labels: s.labels });
  }
}

export class HistogramSeries {
  /** Observations per bucket (not cumulative): counts[i] for bounds[i-1] < v ≤ bounds[i]; the last one above every bound. */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;
  constructor(
    readonly labels: Labels,
    private readonly bounds: readonly number[],
  ) {
    this.counts = new Float64Array(bounds.length + 1);
  }
  observe(value: number): void {
    if (!Number.isFinite(value)) return; // a clock gone wrong is not an observation
    const bounds = this.bounds;
    let i = 0;
    while (i < bounds.length && value > bounds[i]!) i++;
    this.counts[i]! += 1;
    this.sum += value;
    this.count += 1;
  }
  reset(): void {
    this.counts.fill(0);
    this.sum = 0;
    this.count = 0;
  }
}

export class HistogramFamily extends SeriesFamily<HistogramSeries> {
  readonly type = "histogram" as const;
  constructor(
    registry: Registry,
    name: string,
    help: string,
    labelNames: readonly string[],
    private readonly bounds: readonly number[],
  ) {
    if (labelNames.includes("le")) throw new Error("le is the bucket label of a histogram, not one of its own");
    for (let i = 1; i < bounds.length; i++) if (!(bounds[i]! > bounds[i - 1]!)) throw new Error(`histogram ${name}: buckets must increase`);
    super(registry, name, help, labelNames);
    // Without labels there is one series, shown from the start (as prom-client does).
    if (labelNames.length === 0) this.of();
  }
  protected create(labels: Labels): HistogramSeries {
    return new HistogramSeries(labels, this.bounds);
  }
  protected samples(s: HistogramSeries, into: Sample[]): void {
    const bucket = `${this.name}_bucket`;
    let cumulative = 0;
    this.bounds.forEach((le, i) => {
      cumulative += s.counts[i]!;
      into.push({ value: cumulative, labels: { le, ...s.labels }, metricName: bucket });
    });
    into.push({ value: s.count, labels: { le: "+Inf", ...s.labels }, metricName: bucket });
    into.push({ value: s.sum, labels: s.labels, metricName: `${this.name}_sum` });
    into.push({ value: s.count, labels: s.labels, metricName: `${this.name}_count` });
  }
}
