/**
 * A KV entry's JSON value, or undefined for no entry, a delete or purge marker, or an empty value:
 * what every reader of a key means by "the key holds nothing".
 */
import type { KvEntry } from "@nats-io/kv";

export function storedJson<T>(entry: KvEntry | null | undefined): T | undefined {
  return entry && entry.operation === "PUT" && entry.length > 0 ? entry.json<T>() : undefined;
}
