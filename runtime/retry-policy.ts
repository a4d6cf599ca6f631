/** The seed's retry policy, and the arithmetic of backoff. Plain data, plain functions. */
import { parseDuration, type Duration } from "./duration.js";
import type { ErrorRecord } from "./errors.js";

export interface RetryPolicy {
  /** Retries after the first attempt: 3 means up to 4 attempts. */
  maxRetries: number;
  initialIntervalMs: number;
  backoffFactor: number;
  maxIntervalMs: number;
  /** Error types (`error.name`) that fail the step at once. */
  nonRetryableErrors: string[];
}

/** How users write a retry policy (durations as ms or "30s"). */
export interface RetryPolicyInput {
  maxRetries?: number;
  initialInterval?: Duration;
  backoffFactor?: number;
  maxInterval?: Duration;
  nonRetryableErrors?: string[];
}

export function resolveRetryPolicy(input: RetryPolicyInput | undefined, defaults: RetryPolicy, what = "retryPolicy"): RetryPolicy {
  if (!input) return defaults;
  return {
    maxRetries: input.maxRetries ?? defaults.maxRetries,
    initialIntervalMs: input.initialInterval === undefined ? defaults.initialIntervalMs : parseDuration(input.initialInterval, `${what}.initialInterval`),
    backoffFactor: input.backoffFactor ?? defaults.backoffFactor,
    maxIntervalMs: input.maxInterval === undefined ? defaults.maxIntervalMs : parseDuration(input.maxInterval, `${what}.maxInterval`),
    nonRetryableErrors: input.nonRetryableErrors ?? defaults.nonRetryableErrors,
  };
}

/** Delay before attempt `nextAttempt` (2 = the first retry): initial × factor^(n-2), capped. */
export function backoffDelayMs(policy: RetryPolicy, nextAttempt: number): number {
  const delay = policy.initialIntervalMs * Math.pow(policy.backoffFactor, Math.max(0, nextAttempt - 2));
  return Math.min(Math.round(delay), policy.maxIntervalMs);
}

/** Whether a failed attempt `attempt` (1-based) should be retried. */
export function shouldRetry(policy: RetryPolicy, attempt: number, error: ErrorRecord): boolean {
  if (error.nonRetryable) return false;
  if (policy.nonRetryableErrors.includes(error.type)) return false;
  return attempt <= policy.maxRetries;
}
