import { ValidationError } from "./errors.js";

/** A duration as users write it: milliseconds, or a string such as "250ms", "30s", "10m", "1h", "2d", "1h30m". */
export type Duration = number | string;

const UNIT_MS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const PART = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/g;

/**
 * Valid strings already parsed: the same few ("30s", "1m") come back with every step a workflow
 * schedules, and the regular expressions showed in the orchestrator's profile. Bounded.
 */
const parsed = new Map<string, number>();

/** The longest duration accepted: 100 years. Longer ones overflow dates (fireAt) and timers downstream. */
export const MAX_DURATION_MS = 100 * 365 * 86_400_000;
const PARSED_MAX = 1_000;

/** Parse a Duration into milliseconds. Throws a ValidationError naming `what` on anything else. */
export function parseDuration(value: Duration, what = "duration"): number {
  if (typeof value === "number") {
    if (Number.isFinite(value) && value >= 0 && value <= MAX_DURATION_MS) return Math.round(value);
  } else if (typeof value === "string") {
    const known = parsed.get(value);
    if (known !== undefined) return known;
    const text = value.trim();
    let ms: number | undefined;
    if (/^\d+$/.test(text)) ms = Number(text);
    else if (/^((\d+(\.\d+)?)(ms|s|m|h|d))+$/.test(text)) {
      let total = 0;
      for (const match of text.matchAll(PART)) total += Number(match[1]) * UNIT_MS[match[2]!]!;
      ms = Math.round(total);
    }
    if (ms !== undefined && ms <= MAX_DURATION_MS) {
      if (parsed.size < PARSED_MAX) parsed.set(value, ms);
      return ms;
    }
  }
  throw new ValidationError(
    "WF_INVALID_DURATION",
    `${what}: ${JSON.stringify(value)} is not a duration`,
    { hint: 'Use milliseconds (30000) or a string such as "250ms", "30s", "10m", "1h", "1h30m", at most 100 years (36500d).' },
  );
}

/** Human form for logs and `wf show`: 1234 → "1.2s". */
export function formatDuration(ms: number): string {
  if (ms < 1_000) return `${Math.round(ms)}ms`;
  if (ms < 60_000) return `${(ms / 1_000).toFixed(ms < 10_000 ? 1 : 0)}s`;
  if (ms < 3_600_000) return `${Math.floor(ms / 60_000)}m${Math.round((ms % 60_000) / 1_000)}s`;
  return `${Math.floor(ms / 3_600_000)}h${Math.round((ms % 3_600_000) / 60_000)}m`;
}
